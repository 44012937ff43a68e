"""Damage is contained: a partition whose file is corrupt or truncated is left out alone, the rest of its dataset is
served, and /indexes, /health, /metrics and the log say so until a build repairs it."""
import logging
import shutil

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api import create_app
from lib.ingest.image_index import build_image_index
from lib.serve.index_set import load_index_set
from lib.settings import load_settings
from lib.store.catalog import Catalog
from tests.conftest import held_out


def flip_bytes(path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 16] = bytes(b ^ 0xFF for b in data[middle:middle + 16])
    path.write_bytes(bytes(data))


def truncate(path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def left_out_gauge(client) -> float:
    text = client.get("/metrics").text
    return next(s.value for f in text_string_to_metric_families(text) for s in f.samples
                if s.name == "clipsearch_left_out_files")


@pytest.fixture
def damaged(tmp_path, tiny_dataset, demo_encoder):
    """The tiny dataset built in its own workspace, then one partition's file corrupted and another's truncated."""
    root, _ = tiny_dataset
    settings = load_settings(environ={}, overrides=dict(workspace=str(tmp_path), dataset_name="tiny",
                                                        dataset_path=str(root), num_workers=0))
    build_image_index(settings, demo_encoder, progress=False)
    catalog = Catalog.in_folder(settings.indexes_dir, readonly=True)
    corrupt, short = catalog.partitions("tiny")[3:5]
    catalog.close()
    flip_bytes(settings.indexes_dir / corrupt.index_file)
    truncate(settings.indexes_dir / short.index_file)
    return settings, {corrupt.name: corrupt, short.name: short}


def test_a_damaged_partition_is_left_out_alone_until_a_build_repairs_it(damaged, demo_encoder, caplog):
    settings, bad = damaged
    caplog.set_level(logging.INFO, logger="lib.serve.index_set")
    app = create_app(settings, encoder=demo_encoder)
    client = app.test_client()
    results = client.post("/search", json={"query": "red circle", "k": 100}).json["results"]
    assert len(results) == 72 - 4 and not {hit["partition"] for hit in results} & set(bad)
    hit = results[0]["id"]
    assert client.post("/similar", json={"image_id": hit, "k": 3}).status_code == 200
    refused = client.post("/search", json={"query": "red", "partitions": [next(iter(bad))]})
    assert refused.status_code == 404 and "is left out" in refused.json["detail"]
    catalog = Catalog.in_folder(settings.indexes_dir, readonly=True)
    lost = catalog.images("tiny", next(iter(bad)))[0].id
    refused = client.post("/similar", json={"image_id": lost})
    assert refused.status_code == 404 and "which is left out" in refused.json["detail"]

    left_out = {entry["what"]: entry for entry in client.get("/indexes").json["left_out"]}
    for name, partition in bad.items():
        entry = left_out[f"partition tiny/{name}"]
        assert entry["file"] == str(settings.indexes_dir / partition.index_file)
        assert "does not match the catalog" in entry["why"] and "2 images are left out" in entry["why"]
    (dataset,) = client.get("/indexes").json["datasets"]
    assert dataset["count"] == 68 and len(dataset["partitions"]) == 34
    health = client.get("/health")
    assert health.status_code == 200 and health.json["status"] == "degraded" and health.json["left_out_files"] == 2
    assert left_out_gauge(client) == 2

    indexes = app.extensions["clipsearch"].indexes
    loaded = indexes.current()
    Catalog.in_folder(settings.indexes_dir).drop_dataset("none")  # a commit elsewhere: the set is loaded again
    assert indexes.refresh() is not loaded and len(indexes.current().left_out_files) == 2
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 2 and all(any(p.index_file in w for w in warned) for p in bad.values())  # once each

    build_image_index(settings, demo_encoder, progress=False)  # the next build re-encodes both partitions
    indexes.refresh()
    health = client.get("/health").json
    assert health["status"] == "ok" and health["left_out_files"] == 0 and left_out_gauge(client) == 0
    assert len(client.post("/search", json={"query": "red circle", "k": 100}).json["results"]) == 72
    assert sum("is no longer left out" in r.getMessage() for r in caplog.records) == 2


def test_an_ivf_dataset_leaves_out_the_damaged_partition_and_its_lists(ivf_workspace, demo_encoder, tmp_path):
    """A damaged exact file leaves its partition out of the IVF lists too (re-ranking reads the exact vectors);
    damaged IVF lists alone leave their partition searched exactly."""
    indexes = shutil.copytree(ivf_workspace.indexes_dir, tmp_path / "indexes")
    catalog = Catalog.in_folder(indexes, readonly=True)
    partitions = {p.name: p for p in catalog.partitions("mix")}
    ids = {name: {r.id for r in catalog.images("mix", name)} for name in partitions}
    catalog.close()
    flip_bytes(indexes / partitions["class0003"].index_file)
    truncate(indexes / partitions["class0005"].ivf_file)
    index_set = load_index_set(indexes, tmp_path / "none", demo_encoder.identity)
    dataset = index_set.datasets["mix"]
    assert set(index_set.left_out_files) == {"partition mix/class0003", "IVF lists of partition mix/class0005"}
    assert dataset.ivf is not None and "class0003" not in dataset.index.ivf.names
    assert dataset.index.exact_only == ["class0005"] and "class0003" not in dataset.partitions
    for exact in (False, True):
        found = dataset.search(held_out(50), 20, exact=exact)[1]
        assert (found >= 0).all() and not set(found.ravel()) & ids["class0003"]
        assert set(found.ravel()) & ids["class0005"]  # still found, through its exact file
    chosen = dataset.search(held_out(20), 10, ["class0005", "class0007"])[1]
    assert (chosen >= 0).all() and set(chosen.ravel()) <= ids["class0005"] | ids["class0007"]
    assert dataset.count == 12_000 - len(ids["class0003"]) and np.isin(
        list(ids["class0003"]), dataset.order.ids).sum() == 0
