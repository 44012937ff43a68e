"""The API at its edges: each input that once gave a 500, the limits, and the spec that states them."""
import dataclasses
import io

import pytest
from PIL import Image

from api import create_app
from tests.api.test_api import assert_error, drawn, upload
from tests.helpers import bomb_png, encoded

BIG_ID = 2**70  # beyond SQLite's 64-bit integers


@pytest.fixture(scope="module")
def app(built_workspace, demo_encoder):
    small = dataclasses.replace(built_workspace, max_query_chars=50, max_caption_chars=40, max_captions=3,
                                max_images=2, max_json_kb=8, max_json_depth=4, max_upload_mb=1,
                                max_upload_pixels=1_000_000, max_request_pixels=1_500_000)
    return create_app(small, encoder=demo_encoder)


@pytest.fixture
def client(app):
    return app.test_client()


def raw_json(client, route, text):
    return client.post(route, data=text.encode("utf-8", "surrogatepass"), content_type="application/json")


@pytest.mark.parametrize("request_", [
    lambda c: c.get(f"/images/{BIG_ID}"),
    lambda c: c.get(f"/thumbnails/{BIG_ID}"),
    lambda c: c.post("/classify", json={"image_id": BIG_ID}),
    lambda c: c.post("/similar", json={"image_id": BIG_ID}),
    lambda c: c.post("/similarity", json={"image_ids": [BIG_ID], "captions": ["x"]}),
    lambda c: c.post("/classify", data={"image_id": str(BIG_ID)}),
    lambda c: c.post("/api/similar", json={"repos": ["tiny"], "index": BIG_ID, "n_neighbours": 3}),
])
def test_ids_beyond_64_bits_are_refused(client, request_):
    response = request_(client)
    assert response.status_code in (400, 404) and set(response.json) == {"error", "detail"}


@pytest.mark.parametrize("text, words", [
    ('{"query": "x", "k": 1e400}', "k: Input should be a valid integer"),
    ('{"query": "x", "k": Infinity}', "malformed JSON"),
    ('{"query": "x", "k": NaN}', "malformed JSON"),
    ('{"image_id": 1e400}', "image_id: Input should be a valid integer"),
])
def test_non_finite_numbers_are_refused(client, text, words):
    route = "/search" if "query" in text else "/classify"
    assert_error(raw_json(client, route, text), 400, words)


def test_non_finite_threshold_is_refused(client):
    assert_error(raw_json(client, "/similar", '{"image_id": 1, "threshold": -1e400}'), 400, "threshold: Input should")
    assert_error(upload(client, "/similar", drawn("red", "circle"), threshold="nan"), 400, "threshold: Input should")


def test_unpaired_surrogates_are_refused_and_pairs_are_text(client):
    assert_error(raw_json(client, "/search", '{"query": "\\ud800 red"}'), 400, "malformed JSON")
    assert_error(raw_json(client, "/similarity", '{"image_ids": [1], "captions": ["\\udfff"]}'), 400, "malformed JSON")
    paired = raw_json(client, "/search", '{"query": "\\ud83d\\ude00 red circle", "k": 2}')
    assert paired.status_code == 200 and paired.json["query"] == "\U0001F600 red circle"


@pytest.mark.parametrize("depth, status, words", [
    (3000, 400, "recursion limit exceeded"),
    (200, 400, "nest deeper than 4 levels"),
    (5, 400, "nest deeper than 4 levels"),
])
def test_deep_json_is_refused(client, depth, status, words):
    body = '{"query": "x", "partitions": ' + "[" * depth + "]" * depth + "}"
    assert_error(raw_json(client, "/search", body), status, words)


def test_depth_within_the_limit_reaches_the_models(client):
    assert_error(raw_json(client, "/search", '{"query": "x", "partitions": [[[]]]}'), 400, "partitions.0:")


def test_query_and_caption_length_in_characters(client):
    assert client.post("/search", json={"query": "é" * 50}).status_code == 200  # characters, not bytes
    refused = client.post("/search", json={"query": "x" * 5000})
    assert_error(refused, 400, "query: at most 50 characters, not 5000")
    assert len(refused.data) < 300  # the query is not echoed back
    assert_error(client.post("/similarity", json={"image_ids": [1], "captions": ["y" * 41]}), 400,
                 "captions.0: at most 40 characters, not 41")
    form = client.post("/search", data={"query": "z" * 51})
    assert_error(form, 400, "query: at most 50 characters")


def test_counts_of_captions_and_images(client):
    assert_error(client.post("/similarity", json={"image_ids": [1], "captions": ["a"] * 4}), 400,
                 "captions: at most 3 items, not 4")
    assert_error(client.post("/similarity", json={"image_ids": [1, 2, 3], "captions": ["a"]}), 400,
                 "image_ids: at most 2 items, not 3")
    form = {"images": [(io.BytesIO(drawn("red", "circle")), "a.png")], "image_ids": ["1", "2"], "captions": "a"}
    assert_error(client.post("/similarity", data=form, content_type="multipart/form-data"), 400,
                 "at most 2 images (uploads and ids together), not 3")


def test_body_size_limits(client):
    assert_error(client.post("/search", json={"query": "x", "pad": "p" * 9000}), 413, "at most 8 KiB")
    assert_error(upload(client, "/classify", b"\0" * (2 * 1024 * 1024)), 413, "1 MiB for uploads")


def test_pictures_over_the_pixel_limit_are_refused_before_decoding(client):
    assert_error(upload(client, "/classify", bomb_png(1001, 1000)), 400, "over the limit of 1,000,000")
    assert upload(client, "/classify", encoded(Image.new("RGB", (1000, 1000)), "PNG")).status_code == 200
    pictures = [(io.BytesIO(encoded(Image.new("RGB", (1000, 800)), "PNG")), f"{i}.png") for i in range(2)]
    form = {"images": pictures, "captions": "a"}
    assert_error(client.post("/similarity", data=form, content_type="multipart/form-data"), 400,
                 "the pictures of one request may hold 1,500,000 pixels in all; these hold 1,600,000 so far")


def test_wrong_method_says_what_is_allowed(client):
    for path, allowed in (("/search", "OPTIONS, POST"), ("/health", "GET, HEAD, OPTIONS"),
                          ("/api/repos-images", "OPTIONS, POST")):
        response = client.delete(path)
        assert_error(response, 405, "method not allowed")
        assert response.headers["Allow"] == allowed


@pytest.mark.parametrize("value", [1.9, "1.9", True, "true", 2.5e-1])
def test_fractional_and_boolean_ids_are_refused_as_json_and_as_forms(client, value):
    as_json = client.post("/classify", json={"image_id": value})
    as_form = client.post("/classify", data={"image_id": str(value).lower()})
    for response in (as_json, as_form):
        assert_error(response, 400, "image_id: Input should be a valid integer")


def test_whole_floats_are_whole_numbers_in_both(client):
    first = client.post("/search", json={"query": "red circle", "k": 1}).json["results"][0]["id"]
    for response in (client.post("/classify", json={"image_id": float(first), "k": 2.0}),
                     client.post("/classify", data={"image_id": f"{first}.0", "k": "2"})):
        assert response.status_code == 200 and response.json["k"] == 2


def test_a_form_part_without_a_file_name_is_still_an_image(client):
    body = (b"--b\r\nContent-Disposition: form-data; name=\"image\"\r\nContent-Type: image/png\r\n\r\n"
            + drawn("blue", "square") + b"\r\n--b--\r\n")
    response = client.post("/classify", data=body, content_type="multipart/form-data; boundary=b")
    assert response.status_code == 200 and response.json["labels"][0]["label"] == "blue square"


def test_the_spec_states_every_limit_and_error(client):
    spec = client.get("/openapi.json").json
    schemas = spec["components"]["schemas"]
    assert spec["x-limits"] == {"query_chars": 50, "caption_chars": 40, "captions": 3, "images": 2,
                                "upload_pixels": 1_000_000, "request_pixels": 1_500_000, "upload_bytes": 2**20,
                                "json_bytes": 8192, "json_depth": 4, "k": 100}
    query = schemas["SearchBody"]["properties"]["query"]  # a string, or null where terms are given instead
    assert [option.get("maxLength") for option in query["anyOf"]] == [50, None]
    assert schemas["SearchBody"]["properties"]["k"]["minimum"] == 1
    assert schemas["SimilarityBody"]["properties"]["captions"]["maxItems"] == 3
    assert schemas["SimilarityBody"]["properties"]["captions"]["items"]["maxLength"] == 40
    assert schemas["SimilarityForm"]["properties"]["images"]["maxItems"] == 2
    assert schemas["ClassifyForm"]["anyOf"] == [{"required": ["image"]}, {"required": ["image_id"]}]
    assert schemas["ClassifyBody"]["required"] == ["image_id"]
    assert schemas["ClassifyBody"]["properties"]["image_id"]["maximum"] == 2**63 - 1
    assert "'x-limit':" not in str(spec)
    assert "nested at most 4 levels" in spec["info"]["description"]
    search = spec["paths"]["/search"]["post"]
    assert set(search["responses"]) == {"200", "400", "401", "404", "413", "415"}
    assert set(search["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
    image_part = spec["paths"]["/classify"]["post"]["requestBody"]["content"]["multipart/form-data"]["encoding"]
    assert "image/png" in image_part["image"]["contentType"]
    assert spec["paths"]["/images/{image_id}"]["get"]["parameters"][0]["schema"]["maximum"] == 2**63 - 1
