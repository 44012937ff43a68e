"""clip-retrieval's protocol: its own ClipClient (clip-retrieval 2.45.0's clip_client.py, loaded by its path)
against a live server, and the routes through the test client, with and without a key."""
import base64
import dataclasses
import importlib.util
import io
import json
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

import lib.serve.remote_image as remote_image
from api import create_app
from lib.data.synthetic import Scene, draw_scene
from lib.errors import QueryError
from lib.serve.clip_protocol import VOCABULARY_IDS, keep_distinct
from tests.helpers import encoded

KEY = "k" * 40


def clip_retrieval_folder() -> Path:
    """Where the clip_retrieval package is installed, found without importing it (its __init__ imports its whole
    back: torch, faiss...)."""
    spec = importlib.util.find_spec("clip_retrieval")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("clip-retrieval is not installed: run scripts/setup_venv.sh --dev")
    return Path(next(iter(spec.submodule_search_locations)))


def clip_client_module():
    """clip_retrieval/clip_client.py alone, loaded by its path."""
    path = clip_retrieval_folder() / "clip_client.py"
    module_spec = importlib.util.spec_from_file_location("clip_client_under_test", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def clip_client():
    return clip_client_module()


@pytest.fixture(scope="module")
def app(built_workspace, demo_encoder):
    return create_app(built_workspace, encoder=demo_encoder)


@pytest.fixture(scope="module")
def keyed_app(built_workspace, demo_encoder):
    return create_app(dataclasses.replace(built_workspace, api_key=KEY), encoder=demo_encoder)


def first_image(tiny_dataset):
    root, images = tiny_dataset
    return images[0], root


def test_clip_client_by_text_image_and_embedding(live_server, clip_client, tiny_dataset, demo_encoder):
    base, _ = live_server
    client = clip_client.ClipClient(url=f"{base}/knn-service", indice_name="tiny", num_images=5)
    by_text = client.query(text="red circle")
    assert 1 <= len(by_text) <= 5 and {"id", "similarity", "url", "caption"} <= set(by_text[0])
    assert by_text[0]["class_name"] == "red circle"
    assert [r["similarity"] for r in by_text] == sorted((r["similarity"] for r in by_text), reverse=True)
    picture = requests.get(by_text[0]["url"], timeout=10)
    assert picture.status_code == 200 and Image.open(io.BytesIO(picture.content)).size == (96, 96)
    item, root = first_image(tiny_dataset)
    by_image = client.query(image=str(item.path))
    assert by_image[0]["path"] == item.path.relative_to(root).as_posix() and by_image[0]["similarity"] > 0.99
    assert by_image[0]["caption"] == " / ".join(item.captions)  # captions.csv's captions of the image
    embedding = demo_encoder.encode_images([Image.open(item.path)])[0].tolist()
    by_embedding = client.query(embedding_input=embedding)
    assert [r["id"] for r in by_embedding] == [r["id"] for r in by_image]


def test_indices_list_and_metadata(live_server, clip_client):
    base, _ = live_server
    assert requests.get(f"{base}/indices-list", timeout=10).json() == ["tiny"]
    found = clip_client.ClipClient(url=f"{base}/knn-service", indice_name="tiny", num_images=3).query(text="star")
    ids = [r["id"] for r in found]
    answer = requests.post(f"{base}/metadata", data=json.dumps({"ids": ids + [10**12], "indice_name": "tiny"}),
                           timeout=10).json()
    assert [a["id"] for a in answer] == ids  # an id the dataset lacks is left out
    assert answer[0]["metadata"]["url"] == found[0]["url"] and answer[0]["metadata"]["caption"] == found[0]["caption"]


def test_options_this_server_cannot_honour_are_named_in_a_header(live_server):
    base, _ = live_server
    body = {"text": "blue square", "modality": "image", "num_images": 3, "indice_name": "tiny",
            "use_safety_model": True, "use_violence_detector": True, "aesthetic_score": 9, "aesthetic_weight": 0.5}
    response = requests.post(f"{base}/knn-service", data=json.dumps(body), timeout=10)
    assert response.status_code == 200 and len(response.json()) == 3
    assert response.headers["X-Clip-Retrieval-Ignored"] == ("use_safety_model, use_violence_detector, aesthetic_score, "
                                                            "aesthetic_weight")
    plain = requests.post(f"{base}/knn-service", data=json.dumps({"text": "blue square", "num_images": 3}), timeout=10)
    assert plain.status_code == 200 and "X-Clip-Retrieval-Ignored" not in plain.headers


def test_text_modality_ranks_vocabulary_entries_and_captions(app):
    response = app.test_client().post("/knn-service", data=json.dumps(
        {"text": "a photo of a red circle", "modality": "text", "num_images": 20, "indice_name": "tiny"}),
        content_type="text/plain")
    assert response.status_code == 200
    results = response.json
    assert [r["similarity"] for r in results] == sorted((r["similarity"] for r in results), reverse=True)
    words = [r for r in results if r["id"] >= VOCABULARY_IDS]
    captions = [r for r in results if r["id"] < VOCABULARY_IDS]
    assert words and captions  # both kinds of text compete
    assert all("url" not in r and r["vocabulary"] == "tiny" for r in words)
    assert all(r["url"].startswith("http://localhost/images/") for r in captions)
    assert "red" in results[0]["caption"] and "circle" in results[0]["caption"]


def test_deduplicate_keeps_the_best_of_each_connected_group():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=16), rng.normal(size=16)
    close = a + 0.2 * rng.normal(size=16) / 4  # cosine ~0.99 to a
    chain = [a, close, b, close + 0.25 * (b - close) / 4]  # the last is near `close` only
    keep = keep_distinct(np.stack(chain).astype(np.float32))
    unit = np.stack(chain) / np.linalg.norm(np.stack(chain), axis=1, keepdims=True)
    assert unit[0] @ unit[1] >= 0.94 and unit[1] @ unit[3] >= 0.94 and unit[0] @ unit[2] < 0.94
    assert keep.tolist() == [True, False, True, False]  # 3 joins the first group through 1: one group, one kept


def test_deduplicate_over_the_protocol_drops_near_identical_results(app, tiny_dataset):
    client = app.test_client()
    item, _ = first_image(tiny_dataset)
    image = base64.b64encode(item.path.read_bytes()).decode()
    body = {"image": image, "num_images": 12, "indice_name": "tiny"}
    every = client.post("/knn-service", data=json.dumps(body)).json
    kept = client.post("/knn-service", data=json.dumps({**body, "deduplicate": True})).json
    assert [r["id"] for r in kept] == [r["id"] for r in every if r["id"] in {k["id"] for k in kept}]  # order kept
    assert kept[0]["id"] == every[0]["id"] and len(kept) <= len(every)


@pytest.mark.parametrize("body, status, words", [
    ({"num_images": 3}, 400, "give one of text, image, image_url and embedding_input"),
    ({"image": "not base64!", "num_images": 3}, 400, "image: not base64"),
    ({"image": base64.b64encode(b"not a picture").decode()}, 400, "unreadable image"),
    ({"image_url": "http://127.0.0.1/x.png"}, 400, "allow_image_urls is off"),
    ({"embedding_input": [0.1, 0.2]}, 400, "embedding_input has 2 numbers"),
    ({"embedding_input": [0.0] * 128}, 400, "all zeros"),
    ({"text": "x", "indice_name": "other"}, 404, "unknown dataset 'other'"),
    ({"text": "x", "num_images": 0}, 400, "num_images"),
    ({"text": "x", "modality": "audio"}, 400, "modality"),
    ({"text": "x", "aesthetic_score": 5.5}, 400, "aesthetic_score"),
])
def test_bad_requests_get_json_errors(app, body, status, words):
    response = app.test_client().post("/knn-service", data=json.dumps(body))
    assert response.status_code == status, response.json
    assert set(response.json) == {"error", "detail"} and words in response.json["error"] + " " + response.json["detail"]


def test_an_integral_float_is_an_integer_as_json_schema_says(app):
    body = {"text": "red", "num_images": 3.0, "aesthetic_score": 5.0, "aesthetic_weight": 2.5}
    response = app.test_client().post("/knn-service", data=json.dumps(body))
    assert response.status_code == 200 and len(response.json) == 3, response.json


def test_malformed_bodies_get_json_errors(app):
    client = app.test_client()
    for data in ("{", "[1, 2]", "null"):
        response = client.post("/knn-service", data=data)
        assert response.status_code == 400 and "malformed JSON" in response.json["error"]
    assert client.post("/metadata", data=json.dumps({"ids": [-1]})).status_code == 400
    form = client.post("/knn-service", data={"text": "red"}, content_type="multipart/form-data")
    assert form.status_code == 415 and form.json["error"] == "unsupported content type"


def test_with_a_key_the_routes_want_it_or_a_key_bearing_prefix(keyed_app):
    client = keyed_app.test_client()
    body = json.dumps({"text": "red circle", "num_images": 2, "indice_name": "tiny"})
    assert client.post("/knn-service", data=body).status_code == 401
    assert client.get("/indices-list").status_code == 401
    assert client.post("/knn-service", data=body, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    keyed = client.post(f"/clip-retrieval/{KEY}/knn-service", data=body, headers={"Origin": "http://elsewhere:3000"})
    assert keyed.status_code == 200 and keyed.headers["Access-Control-Allow-Origin"] == "*"
    picture = client.get(keyed.json[0]["url"].removeprefix("http://localhost"))  # a signed link: no header needed
    assert picture.status_code == 200
    assert client.get(f"/clip-retrieval/{KEY}/indices-list").json == ["tiny"]
    assert client.post(f"/clip-retrieval/{KEY}/metadata", data=json.dumps({"ids": [keyed.json[0]["id"]]})).json
    wrong = client.post(f"/clip-retrieval/{'x' * 40}/knn-service", data=body)
    assert wrong.status_code == 404 and "error" in wrong.json


def test_without_a_key_there_is_no_key_bearing_prefix(app):
    assert app.test_client().get(f"/clip-retrieval/{KEY}/indices-list").status_code == 404


@pytest.mark.parametrize("url, words", [
    ("ftp://example.org/a.png", "http or https"),
    ("http://user:pw@example.org/a.png", "user name or password"),
    ("http://127.0.0.1:5020/images/1", "loopback, link-local or private"),
    ("http://localhost/a.png", "loopback, link-local or private"),
    ("http://169.254.169.254/latest/meta-data/", "loopback, link-local or private"),
    ("http://10.0.0.1/a.png", "loopback, link-local or private"),
    ("http://[::1]/a.png", "loopback, link-local or private"),
    ("http://[::ffff:127.0.0.1]/a.png", "loopback, link-local or private"),
    ("not a url at all", "not a URL"),
    ("example.org/a.png", "http or https"),
])
def test_image_urls_never_reach_private_addresses(url, words):
    with pytest.raises(QueryError, match=words):
        remote_image.fetch_image(url, 1024 * 1024)


class Pictures(BaseHTTPRequestHandler):
    """/ok.png: a picture; /big: more than the limit; /moved: a redirect to the loopback."""

    def do_GET(self):  # noqa: N802 - http.server's name
        if self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:1/secret")
            self.end_headers()
            return
        body = PNG if self.path == "/ok.png" else b"x" * 300_000
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


PNG = encoded(draw_scene(Scene("red", "circle", 1, "large", "plain"), random.Random(5)), "PNG")


@pytest.fixture
def picture_server(monkeypatch):
    """A local server the fetcher is allowed to reach (as if it were public), on a free port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Pictures)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(remote_image, "is_public", lambda address: address == "127.0.0.1")
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_an_allowed_image_url_is_fetched_within_its_limits(picture_server, app, built_workspace, demo_encoder):
    assert remote_image.fetch_image(f"{picture_server}/ok.png", 100_000) == PNG
    with pytest.raises(QueryError, match="over"):
        remote_image.fetch_image(f"{picture_server}/big", 100_000)
    with pytest.raises(QueryError, match="redirect"):
        remote_image.fetch_image(f"{picture_server}/moved", 100_000)
    allowing = create_app(dataclasses.replace(built_workspace, allow_image_urls=True), encoder=demo_encoder)
    client = allowing.test_client()
    body = {"num_images": 5, "indice_name": "tiny"}
    by_url = client.post("/knn-service", data=json.dumps({**body, "image_url": f"{picture_server}/ok.png"}))
    uploaded = client.post("/knn-service", data=json.dumps({**body, "image": base64.b64encode(PNG).decode()}))
    assert by_url.status_code == 200 and len(by_url.json) == 5 and by_url.json == uploaded.json


def test_the_access_log_never_holds_the_key(monkeypatch):
    """gunicorn's access log line for a key-bearing URL (and a Referer that carries one) has the key masked."""
    import datetime
    from types import SimpleNamespace

    from gunicorn.config import Config

    from api.gunicorn_logger import MASK, KeyMaskingLogger

    monkeypatch.setenv("CLIPSEARCH_API_KEY", KEY)
    logger = KeyMaskingLogger(Config())
    path, referer = f"/clip-retrieval/{KEY}/knn-service", f"http://front/?back=http://host/clip-retrieval/{KEY}"
    environ = {"REQUEST_METHOD": "POST", "RAW_URI": path, "PATH_INFO": path, "SERVER_PROTOCOL": "HTTP/1.1",
               "HTTP_REFERER": referer}
    atoms = logger.atoms(SimpleNamespace(status="200 OK", sent=2, headers=[]),
                         SimpleNamespace(headers=[("REFERER", referer)]), environ, datetime.timedelta(seconds=1))
    assert atoms["r"] == f"POST /clip-retrieval/{MASK}/knn-service HTTP/1.1" and atoms["U"].count(MASK) == 1
    assert atoms["f"].endswith(f"/clip-retrieval/{MASK}") and atoms["{referer}i"].endswith(MASK)
    assert not [name for name, value in atoms.items() if isinstance(value, str) and KEY in value]
