"""/search as issue 23 asks: composed terms and the grammar (parsed), uploads as terms, pages, the cut-off,
and bad input as a 400 that names the field."""
import io
import json

import pytest

from api import create_app
from tests.api.test_api import assert_error, drawn
from tests.helpers import STORES, on_store


@pytest.fixture(scope="module", params=STORES)
def client(request, built_workspace, demo_encoder):
    return create_app(on_store(request, built_workspace), encoder=demo_encoder).test_client()


def search(client, **body):
    response = client.post("/search", json=body)
    assert response.status_code == 200, response.json
    return response.json


def test_terms_and_the_grammar_give_the_same_answer(client):
    grammar = search(client, query="red circle - circle + square", k=3)
    terms = search(client, terms=[{"text": "red circle"}, {"text": "circle", "weight": -1}, {"text": "square"}], k=3)
    assert grammar["parsed"] == terms["parsed"] == [
        {"text": "red circle", "weight": 1.0}, {"text": "circle", "weight": -1.0}, {"text": "square", "weight": 1.0}]
    assert [r["id"] for r in grammar["results"]] == [r["id"] for r in terms["results"]]
    assert [r["class_name"] for r in grammar["results"][:2]] == ["red square", "red square"]
    assert grammar["query"] == "red circle - circle + square" and terms["query"] is None


def test_an_indexed_image_and_an_upload_as_terms(client):
    first = search(client, query="purple star", k=1)["results"][0]
    by_id = search(client, query=f"img:{first['id']}", k=1)
    assert by_id["parsed"] == [{"image_id": first["id"], "weight": 1.0}] and by_id["results"][0]["id"] == first["id"]
    form = {"image": (io.BytesIO(drawn("green", "square")), "q.png"), "query": "2:green", "k": "3"}
    response = client.post("/search", data=form, content_type="multipart/form-data")
    assert response.status_code == 200, response.json
    assert response.json["parsed"] == [{"text": "green", "weight": 2.0}, {"upload": 0, "weight": 1.0}]
    assert {r["class_name"].split()[0] for r in response.json["results"]} == {"green"}
    alone = {"image": (io.BytesIO(drawn("green", "square")), "q.png"), "k": "3"}
    response = client.post("/search", data=alone, content_type="multipart/form-data")
    similar = client.post("/similar", data={"image": (io.BytesIO(drawn("green", "square")), "q.png"), "k": "3"},
                          content_type="multipart/form-data")
    assert [r["id"] for r in response.json["results"]] == [r["id"] for r in similar.json["results"]]
    weighted = {"image": (io.BytesIO(drawn("green", "square")), "q.png"), "k": "1",
                "terms": json.dumps([{"upload": 0, "weight": 0.5}])}
    response = client.post("/search", data=weighted, content_type="multipart/form-data")
    assert response.status_code == 200 and response.json["parsed"] == [{"upload": 0, "weight": 0.5}]


def test_pages_through_next_offset(client):
    offset, ids, scores, pages = 0, [], [], 0
    while offset is not None:
        page = search(client, query="orange ring", k=10, offset=offset)
        assert page["offset"] == offset
        ids += [r["id"] for r in page["results"]]
        scores += [r["score"] for r in page["results"]]
        offset, pages = page["next_offset"], pages + 1
    assert pages == 8 and len(ids) == len(set(ids)) == 72 and scores == sorted(scores, reverse=True)


def test_the_cut_off_and_min_score(client):
    auto = search(client, query="yellow cross", k=100, cutoff="auto")
    assert auto["cutoff_score"] is not None and auto["relevant"] == len(auto["results"]) < 72
    assert all(r["score"] >= auto["cutoff_score"] for r in auto["results"]) and auto["next_offset"] is None
    floor = search(client, query="yellow cross", k=5, min_score=0.2)
    assert floor["cutoff_score"] == 0.2 and all(r["score"] >= 0.2 for r in floor["results"])


@pytest.mark.parametrize("body, words", [
    ({"query": "x", "sort": "random"}, "sort: Input should be 'relevance', 'newest' or 'oldest'"),
    ({"query": "x", "date_from": "2024-05-02", "date_to": "2024-05-01"}, "date_from is after date_to"),
    ({"query": "x", "date_from": "May 1st"}, "date_from: must be an ISO 8601 date"),
    ({"query": "x", "date_to": 20240501}, "date_to: must be an ISO 8601 date"),
    ({"terms": []}, "terms: List should have at least 1 item"),
    ({"terms": [{"text": "red", "weight": float("nan")}]}, "malformed JSON"),  # JSON has no NaN: the column said
    ({"terms": [{"text": "red", "image_id": 3}]}, "exactly one of text, image_id or upload"),
    ({"terms": [{"text": "red", "weight": 0}]}, "weight may not be 0"),
    ({"query": "red", "terms": [{"text": "red"}]}, "not both"),
    ({"query": "red - red"}, "cancel out"),
    ({"query": "red -"}, "term 2 is empty"),
    ({"terms": [{"upload": 0}]}, "upload 0 is not one of the 0 uploaded images"),
    ({"query": "x", "offset": -1}, "offset: Input should be greater than or equal to 0"),
    ({"query": "x", "cutoff": "yes"}, "cutoff: Input should be 'auto'"),
    ({"query": "x", "mode": "text", "cutoff": "auto"}, "mode 'text' has no CLIP scores"),
    ({"query": "x", "min_score": 2}, "min_score: Input should be less than or equal to 1"),
])
def test_bad_search_input_is_a_400_naming_the_field(client, body, words):
    response = client.post("/search", data=json.dumps(body), content_type="application/json")
    assert_error(response, 400, words)


def test_a_weight_of_nan_in_a_form_is_a_400_naming_it(client):
    form = {"terms": '[{"text": "red", "weight": NaN}]'}
    response = client.post("/search", data=form, content_type="multipart/form-data")
    assert_error(response, 400, "terms.0.weight: Input should be a finite number")
