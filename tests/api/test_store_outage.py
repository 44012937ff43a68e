"""The store database stopped and started again under a running server: 503 with a clear error, then answers."""
from __future__ import annotations

import time

import pytest
import requests

from api import create_app
from tests.conftest import serve
from tests.helpers import in_store_database

QUERY = {"query": "red circle", "k": 3}
OTHER = {"query": "blue square", "k": 3}  # not asked before: a page already ranked is answered from memory


def answered(get, deadline_s: float = 10.0):
    """The first answer that is not a 503, within the deadline (a reload may take a check interval)."""
    deadline = time.time() + deadline_s
    while True:
        response = get()
        if response.status_code != 503 or time.time() > deadline:
            return response
        time.sleep(0.2)


def test_the_database_going_away_answers_503_and_the_server_recovers(built_workspace, demo_encoder, postgres):
    client = create_app(in_store_database(built_workspace, postgres), encoder=demo_encoder).test_client()
    before = client.post("/search", json=QUERY)
    assert before.status_code == 200 and len(before.json["results"]) == 3
    mode = client.get("/indexes").json["datasets"][0]["search"]
    assert mode["method"] == "hnsw" and mode["store"] == "postgresql" and mode["ef_search"] >= 10
    image_id = before.json["results"][0]["id"]
    postgres.stop()
    try:
        for response in (client.post("/search", json=OTHER), client.post("/similar", json={"image_id": image_id})):
            assert response.status_code == 503 and response.json["error"] == "store unavailable"
            assert "not reachable" in response.json["detail"] and response.headers["Retry-After"] == "5"
        assert client.get("/health").status_code == 200  # the server itself is up
    finally:
        postgres.start()
    after = answered(lambda: client.post("/search", json=OTHER))
    assert after.status_code == 200 and after.json["results"][0]["class_name"] == "blue square"
    assert client.post("/search", json=QUERY).json["results"] == before.json["results"]


def test_a_server_started_while_the_database_is_away_serves_once_it_is_back(built_workspace, demo_encoder, postgres):
    settings = in_store_database(built_workspace, postgres)
    postgres.stop()
    try:
        app = create_app(settings, encoder=demo_encoder)
        client = app.test_client()
        left_out = {entry["what"]: entry["why"] for entry in client.get("/indexes").json["left_out"]}
        assert "not reachable" in left_out["dataset tiny"]
        assert client.post("/search", json=QUERY).status_code == 503
    finally:
        postgres.start()
    response = answered(lambda: client.post("/search", json=QUERY), 15)
    assert response.status_code == 200 and response.json["results"][0]["class_name"] == "red circle"


@pytest.mark.slow
def test_gunicorn_workers_each_reconnect_after_a_restart(built_workspace, postgres, tmp_path):
    settings = in_store_database(built_workspace, postgres)
    server = serve(built_workspace.workspace, tmp_path / "api.log", store=settings.store)
    base, _ = next(server)
    try:
        def search(query: dict) -> requests.Response:
            return requests.post(f"{base}/search", json=query, timeout=30)

        first = [search(QUERY) for _ in range(6)]  # spread over both workers
        assert all(r.status_code == 200 for r in first)
        assert {r.json()["results"][0]["id"] for r in first} == {first[0].json()["results"][0]["id"]}
        postgres.stop()
        try:
            gone = [search({"query": f"circle number {n}", "k": 3}) for n in range(4)]
            assert all(r.status_code == 503 and r.json()["error"] == "store unavailable" for r in gone)
        finally:
            postgres.start()
        back = [answered(lambda: search(OTHER)) for _ in range(6)]
        assert all(r.status_code == 200 and r.json()["results"] == back[0].json()["results"] for r in back)
        assert back[0].json()["results"][0]["class_name"] == "blue square"
    finally:
        next(server, None)
