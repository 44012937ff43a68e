"""Thumbnails while their cache cannot be written (a full disk): made and served from memory, said once in the log."""
import errno
import io
import logging

import pytest
from PIL import Image

import lib.serve.thumbnails as thumbnails
from api import create_app
from tests.helpers import nearly_full_tmpfs


@pytest.fixture
def client(built_workspace, demo_encoder, monkeypatch):
    monkeypatch.setattr(thumbnails, "_cache_failing", set())
    return create_app(built_workspace, encoder=demo_encoder).test_client()


def assert_thumbnails_served(client, caplog, cache):
    with caplog.at_level(logging.WARNING, logger="lib.serve.thumbnails"):
        for image_id, size in ((1, 77), (2, 77), (1, 61)):  # sizes no other test caches
            response = client.get(f"/thumbnails/{image_id}?size={size}")
            assert response.status_code == 200 and response.mimetype == "image/jpeg"
            assert max(Image.open(io.BytesIO(response.data)).size) <= size
    warnings = [r.getMessage() for r in caplog.records if r.name == "lib.serve.thumbnails"]
    assert len(warnings) == 1 and f"cannot write thumbnails into {cache}" in warnings[0]
    assert not [p for p in cache.iterdir() if p.suffix == ".tmp" or p.stem.endswith(("-77", "-61"))]


def test_thumbnails_are_served_while_the_disk_is_full(client, built_workspace, caplog):
    cache = built_workspace.cache_dir / "thumbnails"
    with nearly_full_tmpfs(cache, free=0, size="64k"):
        assert_thumbnails_served(client, caplog, cache)


def test_thumbnails_are_served_when_any_write_fails(client, built_workspace, caplog, monkeypatch):
    def full(data, path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(thumbnails, "write_atomic", full)
    cache = built_workspace.cache_dir / "thumbnails"
    cache.mkdir(parents=True, exist_ok=True)
    assert_thumbnails_served(client, caplog, cache)
