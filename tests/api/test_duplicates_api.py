"""GET /duplicates and GET /evaluations through the test client, on the workspace with planted copies."""
import pytest

from api import create_app
from lib.store.dataset_figures import save_evaluation
from tests.helpers import STORES, on_store


@pytest.fixture(scope="module", params=STORES)
def client(request, planted_workspace, demo_encoder):
    settings, _ = planted_workspace
    return create_app(on_store(request, settings), encoder=demo_encoder).test_client()


def test_groups_come_in_pages_with_totals_of_every_tier(client):
    first = client.get("/duplicates?dataset=planted&limit=5").json
    assert first["dataset"] == "planted" and first["offset"] == 0 and len(first["groups"]) == 5
    assert first["total"] == sum(t["groups"] for t in first["totals"].values()) and first["next_offset"] == 5
    second = client.get("/duplicates?limit=5&offset=5").json  # the only dataset: no name needed
    assert [g["group"] for g in first["groups"] + second["groups"]] == list(range(1, 11))
    group = first["groups"][0]
    keeper = group["members"][0]
    assert group["tier"] == "exact" and keeper["keep"] and keeper["id"] == group["keeper"]
    assert group["bytes_freed"] == sum(m["bytes"] for m in group["members"] if not m["keep"])
    assert client.get(keeper["thumbnail_url"]).mimetype == "image/jpeg"
    last = client.get(f"/duplicates?offset={first['total'] - 1}").json
    assert len(last["groups"]) == 1 and last["next_offset"] is None


def test_a_tier_filter_and_given_thresholds(client):
    near = client.get("/duplicates?tier=near&limit=1000").json
    assert near["limit"] == 100  # capped at max_k
    assert near["groups"] and {g["tier"] for g in near["groups"]} == {"near"}
    assert near["total"] == near["totals"]["near"]["groups"]
    given = client.get("/duplicates?tier=similar&near=0.99&similar=0.85").json
    assert given["thresholds"]["near"] == 0.99 and given["thresholds"]["details"]["given"]
    assert given["groups"] and all(g["tier"] == "similar" for g in given["groups"])


@pytest.mark.parametrize("query, status, words", [
    ("tier=blurry", 400, "tier: Input should be 'exact', 'near' or 'similar'"),
    ("limit=0", 400, "limit: Input should be greater than or equal to 1"),
    ("offset=-1", 400, "offset: Input should be greater than or equal to 0"),
    ("near=abc", 400, "near: Input should be a valid number"),
    ("near=nan", 400, "near: Input should be a finite number"),
    ("near=0.9&colour=red", 400, "colour: Extra inputs are not permitted"),
    ("dataset=nope", 404, "unknown dataset 'nope'"),
])
def test_bad_requests(client, query, status, words):
    response = client.get(f"/duplicates?{query}")
    assert response.status_code == status and set(response.json) == {"error", "detail"}
    assert words in response.json["detail"]


def test_without_calibration_the_answer_says_what_to_do(tmp_path, tiny_dataset, demo_encoder):
    from lib.ingest.image_index import build_image_index
    from lib.settings import load_settings

    root, _ = tiny_dataset
    settings = load_settings(environ={}, overrides=dict(workspace=str(tmp_path), dataset_name="tiny",
                                                        dataset_path=str(root), num_workers=0, calibration_images=0))
    build_image_index(settings, demo_encoder, progress=False)
    client = create_app(settings, encoder=demo_encoder).test_client()
    response = client.get("/duplicates")
    assert response.status_code == 409 and "find_duplicates.py tiny --calibrate" in response.json["detail"]
    assert client.get("/duplicates?near=0.99&similar=0.9").status_code == 200


def test_evaluations_mark_the_model_in_use(planted_workspace, demo_encoder):
    settings, _ = planted_workspace
    client = create_app(settings, encoder=demo_encoder).test_client()  # figures are files, whatever the store
    assert client.get("/evaluations").json["datasets"] == [{"dataset": "planted", "evaluations": []}]
    save_evaluation(settings.indexes_dir, "planted", demo_encoder.identity, {"zero_shot_top1": 0.8})
    (entry,) = client.get("/evaluations?dataset=planted").json["datasets"][0]["evaluations"]
    assert entry["in_use"] and entry["zero_shot_top1"] == 0.8
    assert client.get("/evaluations?dataset=nope").status_code == 404
