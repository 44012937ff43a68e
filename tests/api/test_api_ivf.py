"""The API over a dataset searched through IVF: exact: true, /indexes, partitions, and imported images."""
import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from api import create_app
from lib.data.embeddings_folder import EmbeddingsPartWriter
from lib.ingest.embeddings_import import import_embeddings
from tests.conftest import ivf_settings


@pytest.fixture(scope="module")
def client(ivf_workspace, demo_encoder):
    return create_app(ivf_workspace, encoder=demo_encoder).test_client()


def test_indexes_say_how_each_dataset_is_searched(client):
    (dataset,) = client.get("/indexes").json["datasets"]
    search = dataset["search"]
    assert dataset["count"] == 12_000 and dataset["index_type"] == "auto" and search["method"] == "ivf"
    assert search["storage"] == "flat" and search["nlist"] == 256 and 0 < search["nprobe"] < 64
    assert search["recall_at_10"] >= 0.95 and search["trained_on"] == 12_000 and search["retrain"] is None
    assert search["exact_partitions"] == 0


def test_exact_true_scans_everything(client):
    approximate = client.post("/search", json={"query": "red circle", "k": 10}).json["results"]
    exact = client.post("/search", json={"query": "red circle", "k": 10, "exact": True}).json["results"]
    assert len(exact) == len(approximate) == 10
    # exact dominates rank by rank
    assert all(e["score"] >= a["score"] - 1e-6 for e, a in zip(exact, approximate, strict=True))
    first = exact[0]["id"]
    similar = client.post("/similar", json={"image_id": first, "k": 5, "exact": True}).json["results"]
    assert len(similar) == 5 and first not in [hit["id"] for hit in similar]
    approximate = client.post("/similar", json={"image_id": first, "k": 5}).json["results"]
    assert {hit["id"] for hit in approximate} & {hit["id"] for hit in similar}


def test_search_within_partitions_through_ivf(client):
    results = client.post("/search", json={"query": "blue", "k": 10,
                                           "partitions": ["class0002", "class0007"]}).json["results"]
    assert len(results) == 10 and {hit["partition"] for hit in results} <= {"class0002", "class0007"}
    response = client.post("/search", json={"query": "blue", "partitions": ["nope"]})
    assert response.status_code == 404


def test_images_of_embeddings_imported_without_a_root_are_a_404_with_the_reason(client):
    hit = client.post("/search", json={"query": "star", "k": 1}).json["results"][0]
    for url in (hit["image_url"], hit["thumbnail_url"]):
        response = client.get(url)
        assert response.status_code == 404 and "without --images-root" in response.json["detail"]


def test_images_root_serves_the_imported_paths(tmp_path, demo_encoder):
    root = tmp_path / "pictures"
    root.mkdir()
    Image.new("RGB", (20, 10), "red").save(root / "r.png")
    writer = EmbeddingsPartWriter(tmp_path / "embeddings", 0, 1, 128, np.float32)
    vector = np.random.default_rng(0).normal(size=(1, 128)).astype(np.float32)
    writer.add(vector / np.linalg.norm(vector), pa.table({"image_path": ["r.png"]}))
    writer.close()
    settings = ivf_settings(tmp_path / "ws")
    import_embeddings(settings, demo_encoder, tmp_path / "embeddings", images_root=root, progress=False)
    client = create_app(settings, encoder=demo_encoder).test_client()
    hit = client.post("/search", json={"query": "red", "k": 1}).json["results"][0]
    assert hit["path"] == "r.png" and hit["width"] == 0  # the import does not open images
    image = client.get(hit["image_url"])
    assert image.status_code == 200 and image.data == (root / "r.png").read_bytes()
