"""Every gunicorn worker serves the newest committed index set, whenever it started: workers recycled by
max_requests after a build, and one killed with SIGKILL, answer for the images the build added."""
import os
import shutil
import signal
import time

import pytest
import requests
from PIL import Image, ImageOps

from lib.ingest.image_index import build_image_index
from lib.settings import load_settings
from lib.store.catalog import Catalog
from tests.api.test_api_server import workers_of
from tests.conftest import serve
from tests.helpers import share_model_cache

pytestmark = pytest.mark.slow
MAX_REQUESTS = 8  # +- 0: gunicorn's jitter is a tenth of it


def replaced(base: str, process, old: set[int], timeout: float = 90) -> set[int]:
    """The workers once none of `old` is left and two are up (each loads the set before it accepts)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        now = workers_of(process)
        if len(now) == 2 and not now & old:
            return now
        requests.get(f"{base}/health", timeout=30)  # requests are what recycles a worker
        time.sleep(0.1)
    pytest.fail(f"workers {old} were not all replaced in {timeout} s")


def kill_a_worker(base: str, process) -> int:
    """SIGKILL to one worker (one that max_requests has not just replaced); its pid."""
    for _ in range(20):
        worker = min(replaced(base, process, set()))
        try:
            os.kill(worker, signal.SIGKILL)
            return worker
        except ProcessLookupError:  # it had served its max_requests and left
            continue
    pytest.fail("no worker stayed up long enough to be killed")


def probe(base: str, image_id: int, times: int) -> list[int]:
    """Statuses of /images and /similar of one image, `times` each, alternated."""
    statuses = []
    for _ in range(times):
        statuses.append(requests.get(f"{base}/images/{image_id}", timeout=30).status_code)
        statuses.append(requests.post(f"{base}/similar", json={"image_id": image_id, "k": 3}, timeout=30).status_code)
    return statuses


def test_workers_started_after_a_build_serve_what_it_added(tmp_path, tiny_dataset, demo_encoder, model_cache,
                                                           monkeypatch):
    root = tmp_path / "photos"
    shutil.copytree(tiny_dataset[0], root)
    workspace = share_model_cache(tmp_path / "ws", model_cache)
    settings = load_settings(environ={}, overrides=dict(workspace=str(workspace), dataset_name="tiny",
                                                        dataset_path=str(root), num_workers=0))
    build_image_index(settings, demo_encoder, progress=False)
    monkeypatch.setenv("CLIPSEARCH_MAX_REQUESTS", str(MAX_REQUESTS))
    server = serve(workspace, tmp_path / "api.log")
    base, process = next(server)
    try:
        before = workers_of(process)
        first = sorted(root.glob("train/*/images/*.JPEG"))[0]
        ImageOps.mirror(Image.open(first)).save(first.with_name("added_" + first.name))
        build_image_index(settings, demo_encoder, progress=False)  # the master's set is now old
        catalog = Catalog.in_folder(settings.indexes_dir, readonly=True)
        added = next(r.id for r in catalog.images("tiny") if r.path.endswith("added_" + first.name))
        replaced(base, process, before)  # every worker now started after the build
        statuses = probe(base, added, 3 * MAX_REQUESTS)  # and more of them are started while probing
        assert statuses == [200] * len(statuses)
        killed = kill_a_worker(base, process)
        replaced(base, process, {killed})
        statuses = probe(base, added, 3 * MAX_REQUESTS)
        assert statuses == [200] * len(statuses)
    finally:
        next(server, None)  # stops api.sh and everything it started
