"""/metrics: requests by route and status with latency, encode time, index sizes, build and model identity."""
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api import create_app


@pytest.fixture(scope="module")
def client(built_workspace, demo_encoder):
    return create_app(built_workspace, encoder=demo_encoder).test_client()


def scrape(client) -> dict:
    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_requests_latency_and_encode_time_are_counted(client):
    before = scrape(client)
    for _ in range(3):
        assert client.post("/search", json={"query": "red circle"}).status_code == 200
    assert client.post("/search", json={"k": 2}).status_code == 400
    assert client.get("/images/999999").status_code == 404
    assert client.get("/images/999999").status_code == 404
    after = scrape(client)

    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "clipsearch_http_requests_total"
    assert grew(requests, route="/search", method="POST", status="200") == 3
    assert grew(requests, route="/search", method="POST", status="400") == 1
    assert grew(requests, route="/images/{image_id}", method="GET", status="404") == 2
    assert grew("clipsearch_http_request_duration_seconds_count", route="/search", method="POST") == 4
    assert grew("clipsearch_http_request_duration_seconds_bucket", route="/search", method="POST", le="+Inf") == 4
    # The query is encoded once: the next two are answered from the worker's cache of text embeddings, and the
    # refused request looked nothing up.
    assert grew("clipsearch_encode_seconds_count", kind="text") == 1
    assert grew("clipsearch_encode_seconds_sum", kind="text") > 0
    assert grew("clipsearch_text_cache_lookups_total", result="miss") == 1
    assert grew("clipsearch_text_cache_lookups_total", result="hit") == 2


def test_paging_and_composed_queries_reuse_the_cached_texts(client):
    before = scrape(client)
    first = client.post("/search", json={"query": "blue square", "k": 3}).json
    client.post("/search", json={"query": "blue square", "k": 3, "offset": first["next_offset"]})
    client.post("/search", json={"query": "blue square + 2:green star", "k": 3})
    after = scrape(client)
    counts = [value(after, name, **labels) - value(before, name, **labels) for name, labels in (
        ("clipsearch_encode_seconds_count", {"kind": "text"}),
        ("clipsearch_text_cache_lookups_total", {"result": "miss"}),
        ("clipsearch_text_cache_lookups_total", {"result": "hit"}))]
    assert counts == [2, 2, 2]  # "blue square" and "green star" encoded once each, "blue square" found twice


def test_index_sizes_and_identity(client, demo_encoder):
    samples = scrape(client)
    assert value(samples, "clipsearch_vectors", dataset="tiny") == 72
    assert value(samples, "clipsearch_vocabulary_entries", vocabulary="tiny") == 36
    (labels,) = [dict(key) for name, key in samples if name == "clipsearch_build_info"]
    assert labels["model"] == "demo" and labels["weights_sha256"] == demo_encoder.identity.weights_sha256
    assert labels["dim"] == "128" and labels["version"] == "0.1.0"
