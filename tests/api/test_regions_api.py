"""/similar with regions: a collage's and a screenshot's parts searched one by one, by id and by upload, and the
hits of a dataset built with --regions (a region's box, its picture's links)."""
import io

import pytest
from PIL import Image

from api import create_app
from tests.api.test_api import assert_error
from tests.ingest.test_regions_build import near, rows_by_path


@pytest.fixture(scope="module")
def client(regions_workspace, demo_encoder):
    settings, _ = regions_workspace
    return create_app(settings, encoder=demo_encoder).test_client()


@pytest.fixture(scope="module")
def ids(regions_workspace):
    settings, _ = regions_workspace
    return {path: next(r.id for r in rows if r.scene == -1) for path, rows in rows_by_path(settings, "parts").items()}


def similar(client, **body) -> dict:
    response = client.post("/similar", json={"k": 3, **body})
    assert response.status_code == 200, response.json
    return response.json


def test_each_region_of_an_indexed_collage_finds_its_source(client, ids, regions_workspace):
    _, parts = regions_workspace
    for composite, truth in parts.items():
        answer = similar(client, image_id=ids[composite], regions=True)
        assert [part["box"] for part in answer["regions"]] and len(answer["regions"]) == len(truth)
        for part, (name, box) in zip(answer["regions"], truth, strict=True):
            assert near(part["box"], box), (part["box"], box)
            assert part["results"][0]["path"] == name and part["results"][0]["region"] is None
            assert composite not in {hit["path"] for hit in part["results"]}  # never the picture's own rows
            assert set(part["results"][0]) == set(answer["results"][0])  # shaped like /similar's results
        assert composite not in {hit["path"] for hit in answer["results"]}


def test_an_upload_is_split_in_its_own_pixels(client, regions_workspace):
    settings, parts = regions_workspace
    data = (settings.dataset_path / "page.png").read_bytes()
    assert max(Image.open(io.BytesIO(data)).size) > 1024  # shrunk to the upload side before it is split
    response = client.post("/similar", data={"image": (io.BytesIO(data), "page.png"), "k": "2", "regions": "true"},
                           content_type="multipart/form-data")
    assert response.status_code == 200, response.json
    found = response.json["regions"]
    assert len(found) == 2
    for part, (name, box) in zip(found, parts["page.png"], strict=True):
        assert near(part["box"], box, pixels=6) and part["results"][0]["path"] in (name, "page.png")


def test_a_plain_picture_is_one_region_and_regions_are_off_by_default(client, ids):
    answer = similar(client, image_id=ids["photo_7.jpg"], regions=True)
    assert [part["box"] for part in answer["regions"]] == [[0, 0, 224, 224]]
    assert [h["id"] for h in answer["regions"][0]["results"]] == [h["id"] for h in answer["results"]]
    assert similar(client, image_id=ids["photo_7.jpg"])["regions"] is None


def test_a_region_hit_carries_its_box_and_its_picture_links(client, ids, regions_workspace):
    settings, parts = regions_workspace
    answer = similar(client, image_id=ids["photo_1.jpg"], k=5)
    hit = answer["results"][0]
    assert hit["path"] == "collage.jpg" and near(hit["region"], parts["collage.jpg"][1][1])
    served = client.get(hit["image_url"])
    assert served.status_code == 200 and served.data == (settings.dataset_path / "collage.jpg").read_bytes()
    assert [h["path"] for h in answer["results"]].count("collage.jpg") == 1


def test_regions_refuse_a_video_scene_and_bad_values(client, ids, video_workspace, demo_encoder):
    assert_error(client.post("/similar", json={"image_id": ids["collage.jpg"], "regions": "maybe"}), 400, "regions")
    settings, _ = video_workspace
    videos = create_app(settings, encoder=demo_encoder).test_client()
    scene = next(h for h in videos.post("/search", json={"query": "blue square", "dataset": "mixed"}).json["results"]
                 if h["media"] == "video")
    assert_error(videos.post("/similar", json={"image_id": scene["id"], "regions": True}), 400, "scene of a video")


def test_a_text_search_lists_a_picture_once_by_its_best_entry(client, regions_workspace):
    _, parts = regions_workspace
    for query, name in [("red circle", "photo_0.jpg"), ("yellow star", "photo_3.jpg")]:
        pages = [client.post("/search", json={"query": query, "k": 4, "offset": offset}).json for offset in (0, 4, 8)]
        hits = [hit for page in pages for hit in page["results"]]
        paths = [hit["path"] for hit in hits]
        assert len(paths) == len(set(paths)) == 12  # pages that continue each other, each picture once
        collage = next(hit for hit in hits if hit["path"] == "collage.jpg")
        box = dict(parts["collage.jpg"])[name]
        assert collage["region"] is not None and near(collage["region"], box)  # the part that matched, not the whole


def test_duplicates_and_an_export_leave_regions_out(client, ids, regions_workspace, tmp_path):
    import pyarrow.parquet as pq

    from lib.ingest.export import export_dataset

    settings, _ = regions_workspace
    regions = {r.id for rows in rows_by_path(settings, "parts").values() for r in rows if r.region}
    closest = similar(client, image_id=ids["photo_0.jpg"], k=1)["results"][0]
    assert closest["id"] in regions and closest["score"] >= 0.9  # close enough to group, were regions grouped
    answer = client.get("/duplicates?dataset=parts&near=0.9&similar=0.9").json
    assert answer["groups"] == []  # a collage's part is not a copy of the photo it shows
    assert export_dataset(settings, "parts", tmp_path / "out", progress=False) == 12  # one row per picture
    paths = [p for f in sorted((tmp_path / "out" / "metadata").glob("*.parquet"))
             for p in pq.read_table(f).column("image_path").to_pylist()]
    assert sorted(paths) == sorted(rows_by_path(settings, "parts"))
