"""A damaged catalog when the server starts: it serves from the good copy and says so, or refuses in one line."""
import gc
import logging
import shutil

import pytest

from api import create_app
from api.launch import main as launch
from lib.errors import CatalogDamagedError
from lib.ingest.image_index import build_image_index
from lib.settings import load_settings
from lib.store.catalog import CATALOG_NAME
from lib.store.catalog_copy import good_copy
from tests.store.test_catalog_copy import overwrite_start, truncate


def settings_of(workspace, root=None):
    return load_settings(environ={}, overrides=dict(workspace=str(workspace), dataset_name="tiny",
                                                    dataset_path=str(root or workspace), num_workers=0))


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_dataset, demo_encoder):
    """A workspace with the tiny dataset built (and so its good copy kept), its catalog closed."""
    workspace = tmp_path_factory.mktemp("damage-workspace")
    build_image_index(settings_of(workspace, tiny_dataset[0]), demo_encoder, progress=False)
    gc.collect()
    assert not (workspace / "indexes" / (CATALOG_NAME + "-wal")).exists()
    return workspace


@pytest.fixture(params=[truncate, overwrite_start], ids=lambda f: f.__name__)
def damaged(request, built, tmp_path):
    """A copy of the built workspace whose catalog is damaged."""
    workspace = tmp_path / "ws"
    shutil.copytree(built, workspace, symlinks=True)
    request.param(workspace / "indexes" / CATALOG_NAME)
    return settings_of(workspace)


def test_the_server_starts_from_the_good_copy_and_says_so(damaged, demo_encoder, caplog):
    with caplog.at_level(logging.WARNING):
        client = create_app(damaged, encoder=demo_encoder).test_client()
    (line,) = [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
    assert f"catalog {damaged.indexes_dir / CATALOG_NAME} is damaged" in line and "restored the good copy" in line
    assert list(damaged.indexes_dir.glob("catalog.sqlite.damaged-*"))  # kept, not lost
    assert client.get("/health").json["datasets"] == 1
    results = client.post("/search", json={"query": "red circle", "k": 3}).json["results"]
    assert len(results) == 3 and results[0]["class_name"] == "red circle"


def test_without_a_copy_the_server_refuses_in_one_line(damaged, demo_encoder, monkeypatch, capsys, tmp_path):
    good_copy(damaged.indexes_dir).unlink()
    with pytest.raises(CatalogDamagedError, match="no good copy"):
        create_app(damaged, encoder=demo_encoder)
    monkeypatch.setenv("CLIPSEARCH_WORKSPACE", str(damaged.workspace))
    with pytest.raises(SystemExit) as refused:  # what scripts/api.sh runs before gunicorn
        launch([str(tmp_path / "run")])
    assert refused.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"api.sh: error: catalog {damaged.indexes_dir / CATALOG_NAME} is damaged")
    assert "build_image_index.py NAME PATH" in line
    assert not list(damaged.indexes_dir.glob("catalog.sqlite.damaged-*"))  # left for the builder to move aside
