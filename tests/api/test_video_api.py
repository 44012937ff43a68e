"""Scenes of videos through the API: hits with their span and links, the scene's frame as thumbnail and image,
the video file with HTTP range requests, results grouped by video, "more like this" on a scene, and
duplicates that leave scenes out unless asked."""
import io
import os

import pytest
from PIL import Image

from api import create_app
from lib.data.synthetic_video import SHOWN
from tests.api.test_api import assert_error

VIDEO = "clips/three scenes.mp4"


@pytest.fixture(scope="module")
def client(video_workspace, demo_encoder):
    settings, _ = video_workspace
    return create_app(settings, encoder=demo_encoder).test_client()


def search(client, query: str, **body) -> dict:
    response = client.post("/search", json={"query": query, "dataset": "mixed", "k": 10, **body})
    assert response.status_code == 200, response.json
    return response.json


def scene_hit(client, colour: str, shape: str) -> dict:
    return next(hit for hit in search(client, f"{colour} {shape}")["results"] if hit["media"] == "video")


def video_bytes(video_workspace) -> bytes:
    settings, _ = video_workspace
    return (settings.dataset_path / VIDEO).read_bytes()


def test_a_scene_hit_carries_its_span_and_its_video(client, video_workspace):
    _, cuts = video_workspace
    starts = [0.0, *cuts]
    for n, (colour, shape) in enumerate(SHOWN):
        hit = search(client, f"{colour} {shape}")["results"][0]
        assert hit["media"] == "video" and hit["path"] == VIDEO, (colour, shape, hit)
        assert abs(hit["video_start"] - starts[n]) <= 1.0 and hit["video_end"] > hit["video_start"]
        assert hit["video_url"] == f"/videos/{hit['id']}"
    picture = next(h for h in search(client, "yellow triangle")["results"] if h["media"] == "image")
    assert picture["video_url"] is None and picture["video_start"] is None and picture["video_end"] is None


def dominant(data: bytes) -> tuple[int, int, int]:
    """The mean colour of the picture's most saturated tenth of pixels."""
    pixels = list(Image.open(io.BytesIO(data)).convert("RGB").getdata())
    pixels.sort(key=lambda p: max(p) - min(p), reverse=True)
    top = pixels[:max(1, len(pixels) // 10)]
    return tuple(sum(p[i] for p in top) // len(top) for i in range(3))  # type: ignore[return-value]


def test_the_thumbnail_and_the_image_of_a_scene_are_its_frame(client):
    channel = {"red": 0, "green": 1, "blue": 2}
    for colour, shape in SHOWN:
        hit = scene_hit(client, colour, shape)
        for link, side in ((hit["thumbnail_url"], 256), (hit["image_url"], 320)):
            response = client.get(link)
            assert response.status_code == 200 and response.mimetype == "image/jpeg"
            picture = Image.open(io.BytesIO(response.data))
            assert max(picture.size) == side
            mean = dominant(response.data)
            assert max(range(3), key=lambda i: mean[i]) == channel[colour], (colour, mean)


def test_the_video_is_served_whole_and_by_ranges(client, video_workspace):
    whole = video_bytes(video_workspace)
    link = scene_hit(client, "blue", "square")["video_url"]
    response = client.get(link)
    assert response.status_code == 200 and response.data == whole and response.mimetype == "video/mp4"
    assert response.headers["Accept-Ranges"] == "bytes"
    part = client.get(link, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.data == whole[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(whole)}"
    tail = client.get(link, headers={"Range": "bytes=-50"})
    assert tail.status_code == 206 and tail.data == whole[-50:]
    beyond = client.get(link, headers={"Range": f"bytes={len(whole)}-"})
    assert_error(beyond, 416, "holds")
    assert beyond.headers["Content-Range"] == f"bytes */{len(whole)}"


def test_only_scenes_have_a_video(client):
    picture = next(h for h in search(client, "purple cross")["results"] if h["media"] == "image")
    assert_error(client.get(f"/videos/{picture['id']}"), 404, "is a picture")
    assert_error(client.get("/videos/999999"), 404, "no indexed image")


def test_grouped_results_hold_one_scene_per_video_and_page_exactly(client):
    plain = search(client, "red circle")["results"]
    assert sum(h["media"] == "video" for h in plain) == 3
    grouped = search(client, "red circle", group_videos=True)
    scenes = [h for h in grouped["results"] if h["media"] == "video"]
    assert len(scenes) == 1 and scenes[0]["id"] == next(h["id"] for h in plain if h["media"] == "video")
    assert [h["id"] for h in grouped["results"]] == [h["id"] for h in plain if h in scenes or h["media"] == "image"]
    paged, offset = [], 0
    while offset is not None:
        page = search(client, "red circle", group_videos=True, k=1, offset=offset)
        paged += [h["id"] for h in page["results"]]
        offset = page["next_offset"]
    assert paged == [h["id"] for h in grouped["results"]]
    newest = search(client, "red circle", group_videos=True, sort="newest")["results"]
    assert sorted(h["id"] for h in newest) == sorted(h["id"] for h in grouped["results"])


def test_more_like_a_scene(client):
    hit = scene_hit(client, "green", "star")
    response = client.post("/similar", json={"image_id": hit["id"], "k": 10})
    assert response.status_code == 200, response.json
    results = response.json["results"]
    assert hit["id"] not in [h["id"] for h in results] and len(results) == 4  # the other two scenes, two pictures
    assert {h["media"] for h in results} == {"image", "video"}


def test_duplicates_leave_scenes_out_unless_asked(client):
    asked = {"dataset": "mixed", "near": 0.99, "similar": 0.9}
    without = client.get("/duplicates", query_string=asked)
    assert without.status_code == 200, without.json
    assert without.json["images"] == 2
    with_videos = client.get("/duplicates", query_string={**asked, "videos": "true"})
    assert with_videos.status_code == 200 and with_videos.json["images"] == 5


def test_a_video_changed_after_indexing_is_not_served(tmp_path, video_workspace, demo_encoder, model_cache):
    import shutil

    from lib.ingest.image_index import build_image_index
    from lib.settings import load_settings
    from tests.helpers import share_model_cache

    settings, _ = video_workspace
    root = tmp_path / "one"
    (root / "clips").mkdir(parents=True)
    shutil.copy(settings.dataset_path / VIDEO, root / VIDEO)
    workspace = share_model_cache(tmp_path / "ws", model_cache)
    own = load_settings(environ={}, overrides=dict(workspace=str(workspace), dataset_name="one",
                                                   dataset_path=str(root), num_workers=0, calibration_images=0))
    build_image_index(own, demo_encoder, progress=False)
    own_client = create_app(own, encoder=demo_encoder).test_client()
    hit = search(own_client, "red circle", dataset="one")["results"][0]
    assert own_client.get(hit["video_url"]).status_code == 200
    with open(root / VIDEO, "r+b") as file:
        file.truncate(os.path.getsize(root / VIDEO) // 2)
    assert_error(own_client.get(hit["video_url"]), 404, "")
    assert_error(own_client.get(hit["thumbnail_url"] + "?size=64"), 404, "")
