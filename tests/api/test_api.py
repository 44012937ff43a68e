"""The Flask app through its test client: every endpoint, and every kind of bad input."""
import dataclasses
import io
import random
import re

import numpy as np
import pytest
from PIL import Image

from api import create_app
from lib.data.synthetic import Scene, draw_scene
from tests.helpers import STORES, bomb_png, encoded, on_store


@pytest.fixture(scope="module", params=STORES)
def app(request, built_workspace, demo_encoder):
    """The app over either store: every test of this module runs against both (issue 29)."""
    return create_app(on_store(request, dataclasses.replace(built_workspace, max_upload_mb=1)), encoder=demo_encoder)


@pytest.fixture
def client(app):
    return app.test_client()


def drawn(colour: str, shape: str, fmt: str = "PNG") -> bytes:
    return encoded(draw_scene(Scene(colour, shape, 1, "large", "plain"), random.Random(5)), fmt)


def upload(client, route, data: bytes, name="q.png", **fields):
    form = {"image": (io.BytesIO(data), name), **{k: str(v) for k, v in fields.items()}}
    return client.post(route, data=form, content_type="multipart/form-data")


def assert_error(response, status, words):
    assert response.status_code == status, response.json
    assert set(response.json) == {"error", "detail"}
    assert words in (response.json["error"] + " " + response.json["detail"])


def test_health_and_indexes(client, demo_encoder):
    health = client.get("/health").json
    assert health["status"] == "ok" and health["datasets"] == 1 and health["vocabularies"] == 1
    info = client.get("/indexes").json
    assert info["model"]["weights_sha256"] == demo_encoder.identity.weights_sha256
    (dataset,) = info["datasets"]
    assert dataset["name"] == "tiny" and dataset["count"] == 72 and len(dataset["partitions"]) == 36
    assert {"name": "n90000000", "class_name": "red circle", "count": 2} in dataset["partitions"]
    assert info["vocabularies"] == [{"name": "tiny", "entries": 36, "templates": ["a photo of a {}."]}]


def test_search_ranks_images_and_links_them(client):
    response = client.post("/search", json={"query": "red circle", "k": 5})
    assert response.status_code == 200
    results = response.json["results"]
    assert len(results) == 5 and results[0]["class_name"] == "red circle"
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    image = client.get(results[0]["image_url"])
    assert image.status_code == 200 and Image.open(io.BytesIO(image.data)).size == (96, 96)
    thumb = client.get(results[0]["thumbnail_url"] + "?size=32")
    assert thumb.mimetype == "image/jpeg" and max(Image.open(io.BytesIO(thumb.data)).size) <= 32


def test_search_in_chosen_partitions(client):
    response = client.post("/search", json={"query": "red circle", "k": 10, "dataset": "tiny",
                                            "partitions": ["n90000007", "n90000008"]})
    assert {r["partition"] for r in response.json["results"]} == {"n90000007", "n90000008"}
    assert len(response.json["results"]) == 4
    assert_error(client.post("/search", json={"query": "x", "partitions": ["nope"]}), 404, "no partition 'nope'")
    assert_error(client.post("/search", json={"query": "x", "dataset": "other"}), 404, "unknown dataset 'other'")


@pytest.mark.parametrize("body, status, words", [
    ({"k": 3}, 400, "give either query or terms"),
    ({"query": "   "}, 400, "query: must hold at least one non-space character"),
    # space to Python or to the spec:
    ({"query": "\x1e\ufeff"}, 400, "query: must hold at least one non-space character"),
    ({"query": 5}, 400, "query: Input should be a valid string"),
    ({"query": "x", "k": 0}, 400, "k: Input should be greater than or equal to 1"),
    ({"query": "x", "k": "ten"}, 400, "k: Input should be a valid integer"),
    ({"query": "x", "k": True}, 400, "k: Input should be a valid integer"),
    ({"query": "x", "k": 5.0}, 200, ""),
    ({"query": "x", "partitions": ["n90000000"]}, 200, ""),
    ({"query": "x", "partitions": "n90000000"}, 400, "partitions: Input should be a valid list"),
    ({"query": "x", "partitions": [1, 2]}, 400, "partitions.0: Input should be a valid string"),
    ({"query": "x", "querry": "y"}, 400, "querry: Extra inputs are not permitted"),
])
def test_search_bad_input(client, body, status, words):
    response = client.post("/search", json=body)
    if status == 200:
        assert response.status_code == 200
    else:
        assert_error(response, status, words)


def test_k_is_capped_and_said(client):
    response = client.post("/search", json={"query": "blue", "k": 5000})
    assert response.status_code == 200 and response.json["k"] == 100
    assert response.json["notes"] == ["k=5000 is over the limit; capped at 100"]


def test_body_format_errors(client):
    assert_error(client.post("/search", data="{oops", content_type="application/json"), 400, "malformed JSON")
    assert_error(client.post("/search", json=["query"]), 400, "JSON object")
    assert_error(client.post("/search", data="query=x", content_type="text/plain"), 415, "unsupported content type")
    assert_error(client.post("/search"), 415, "unsupported content type")
    assert_error(client.get("/search"), 405, "method not allowed")


def test_classify_an_upload(client):
    response = upload(client, "/classify", drawn("blue", "square"), k=5)
    assert response.status_code == 200
    labels = response.json["labels"]
    assert len(labels) == 5 and labels[0]["label"] == "blue square"
    probabilities = [label["probability"] for label in labels]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1.0001
    assert all(-1 <= label["score"] <= 1 for label in labels)


def test_classify_an_indexed_image(client):
    first = client.post("/search", json={"query": "green star", "k": 1}).json["results"][0]
    response = client.post("/classify", json={"image_id": first["id"], "k": 3, "vocab": "tiny"})
    assert response.status_code == 200 and len(response.json["labels"]) == 3
    assert first["class_name"] in [label["label"] for label in response.json["labels"]]


@pytest.mark.parametrize("data, name, words", [
    (b"", "empty.png", "empty upload"),
    (b"plain text, not a picture", "notes.png", "unreadable image"),
    (drawn("red", "circle", "JPEG")[:300], "cut.jpg", "truncated"),
    (bomb_png(50_000, 50_000), "bomb.png", "decompression bomb"),
])
def test_classify_bad_uploads(client, data, name, words):
    assert_error(upload(client, "/classify", data, name), 400, words)


def test_upload_too_large_and_missing_image(client):
    assert_error(upload(client, "/classify", b"\0" * (2 * 1024 * 1024)), 413, "too large")
    assert_error(client.post("/classify", json={"k": 3}), 400, "image_id: Field required")
    assert_error(client.post("/classify", data={"k": "3"}), 400,
                 "upload an image in the field 'image' or give an image_id")
    assert_error(client.post("/classify", json={"image_id": 10**9}), 404, "no indexed image")
    assert_error(upload(client, "/classify", drawn("red", "ring"), vocab="klingon"), 404, "unknown vocabulary")


def test_similar_excludes_the_query_image(client):
    first = client.post("/search", json={"query": "yellow triangle", "k": 1}).json["results"][0]
    response = client.post("/similar", json={"image_id": first["id"], "k": 5})
    assert response.status_code == 200
    ids = [r["id"] for r in response.json["results"]]
    assert len(ids) == 5 and first["id"] not in ids


def test_near_duplicates_of_an_upload(client):
    first = client.post("/search", json={"query": "purple cross", "k": 1}).json["results"][0]
    original = client.get(first["image_url"]).data
    copy = encoded(Image.open(io.BytesIO(original)).convert("RGB"), "PNG")  # same pixels, other file
    response = upload(client, "/similar", copy, k=10, duplicates="true", threshold=0.99)
    results = response.json["results"]
    assert results and results[0]["id"] == first["id"] and results[0]["score"] > 0.99
    assert all(r["score"] >= 0.99 for r in results)
    assert_error(upload(client, "/similar", copy, threshold=3), 400,
                 "threshold: Input should be less than or equal to 1")


def test_similarity_matrix(client):
    form = {"images": [(io.BytesIO(drawn("red", "circle")), "a.png"), (io.BytesIO(drawn("blue", "star")), "b.png")],
            "captions": ["a red circle", "a blue star"]}
    response = client.post("/similarity", data=form, content_type="multipart/form-data")
    assert response.status_code == 200
    matrix = np.array(response.json["matrix"])
    assert matrix.shape == (2, 2) and matrix[0, 0] > matrix[0, 1] and matrix[1, 1] > matrix[1, 0]
    assert response.json["pairs"] == pytest.approx([matrix[0, 0], matrix[1, 1]], abs=1e-5)
    by_id = client.post("/similarity", json={"image_ids": [1, 2, 3], "captions": ["red"]}).json
    assert np.array(by_id["matrix"]).shape == (3, 1) and by_id["pairs"] is None
    assert_error(client.post("/similarity", json={"image_ids": [1], "captions": ["", " "]}), 400,
                 "captions.0: String should have at least 1 character; captions.1: must hold at least one non-space")
    assert_error(client.post("/similarity", json={"image_ids": [1], "captions": ["x"] * 300}), 400,
                 "captions: at most 256 items, not 300")
    assert_error(client.post("/similarity", json={"image_ids": ["one"], "captions": ["x"]}), 400,
                 "image_ids.0: Input should be a valid integer")
    assert_error(client.post("/similarity", data={"captions": "x"}), 400, "give at least one image")


@pytest.mark.parametrize("path", [
    "/images/0", "/images/-1", "/images/abc", "/images/..%2F..%2F..%2Fetc%2Fpasswd", "/images/1/../../../etc/passwd",
    "/thumbnails/..%2Fetc%2Fpasswd", "/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/..%2F..%2Fetc%2Fpasswd",
    "/frontend/../api/routes.py", "/%2e%2e/api/routes.py", "/..%2fapi%2froutes.py", "/etc/passwd",
])
def test_no_path_from_the_client_reaches_the_file_system(client, path):
    response = client.get(path)
    assert response.status_code in (400, 404), path
    assert b"root:" not in response.data and b"def " not in response.data


def test_thumbnail_size_bounds(client):
    assert_error(client.get("/thumbnails/1?size=5"), 400, "size: Input should be greater than or equal to 16")
    assert_error(client.get("/thumbnails/1?size=big"), 400, "size: Input should be a valid integer")


def test_openapi_documents_every_route(client, app):
    spec = client.get("/openapi.json").json
    documented = {(path, method.upper()) for path, operations in spec["paths"].items() for method in operations}
    routes = {(re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule), method) for rule in app.url_map.iter_rules()
              if rule.endpoint not in ("api.page", "api.index_page", "api.openapi")
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert routes == documented
    assert ("/api/search", "POST") in documented and ("/images/{image_id}", "GET") in documented


def test_pages_and_config(client):
    assert client.get("/").status_code == 200
    assert client.get("/config.json").json == {"api": "http://localhost"}


def test_random_bodies_never_make_a_500(client):
    rng = random.Random(0)
    values = [None, True, -1, 0, 10**12, 1.5, "", "x" * 5000, [], {}, ["a"], {"a": 1}, "n90000000", "\u0000"]
    keys = ["query", "k", "dataset", "partitions", "image_id", "vocab", "duplicates", "threshold", "captions",
            "image_ids"]
    for _ in range(150):
        body = {key: rng.choice(values) for key in rng.sample(keys, rng.randint(0, 5))}
        for route in ("/search", "/classify", "/similar", "/similarity"):
            response = client.post(route, json=body)
            assert response.status_code < 500, (route, body, response.json)


def test_each_gunicorn_worker_warms_up_before_it_accepts_requests(built_workspace, model_cache, monkeypatch):
    """gunicorn calls post_worker_init in the worker, after the fork and before its accept loop: the encoder is
    compiled there, with the worker's share of the cores, and has run a query, so the first request is not
    the one that pays for it."""
    import os
    from types import SimpleNamespace

    import api.gunicorn_conf as gunicorn_conf
    from lib.model.loading import load_encoder

    encoder = load_encoder("demo", cache_dir=model_cache)  # as the master loads it: not compiled yet
    queries = []
    monkeypatch.setattr(encoder, "encode_texts", lambda texts: queries.append(texts) or np.zeros((1, encoder.dim)))
    gunicorn_conf.post_worker_init(SimpleNamespace(wsgi=create_app(built_workspace, encoder=encoder)))
    threads = max(1, (os.cpu_count() or 1) // gunicorn_conf.workers)
    assert len(queries) == 1 and encoder.towers.compiled_property("INFERENCE_NUM_THREADS") == {
        "image": str(threads), "text": str(threads)}
