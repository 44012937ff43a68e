"""/search's filters (capture date, folder, pixel size) applied inside the search, date order, and the text and
hybrid modes, on a small library with EXIF dates, folders, two sizes and captions."""
import random
from datetime import datetime

import pytest
from PIL import Image

from api import create_app
from lib.data.synthetic import Scene, draw_scene
from tests.api.test_api import assert_error
from tests.helpers import STORES, on_store, share_model_cache

COLOURS = ("red", "blue", "green")


def write_library(root):
    """36 pictures: red circles, blue squares and green stars, in 2019/, 2020/ and scans/ (no EXIF: mtime),
    dated a day apart, half of them 160 px, with captions naming the colour and a word of their own."""
    rng, captions = random.Random(1), ["image,caption"]
    for n in range(36):
        colour = COLOURS[n % 3]
        shape = {"red": "circle", "blue": "square", "green": "star"}[colour]
        folder = ("2019", "2020", "scans")[n // 12]
        size = 160 if n % 2 else 96
        picture = draw_scene(Scene(colour, shape, 1 + n % 2, "large", "plain"), rng, size)
        path = root / folder / f"{colour}_{shape}-{n:02d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        exif = Image.Exif()
        if folder != "scans":
            exif.get_ifd(0x8769)[36867] = f"{folder}:03:{1 + n % 12:02d} 12:00:00"
        picture.save(path, exif=exif)
        captions.append(f"{folder}/{path.name},a {colour} {shape}{' at the seaside' if n % 4 == 0 else ''}")
    (root / "captions.csv").write_text("\n".join(captions) + "\n")


@pytest.fixture(scope="module")
def dated(tmp_path_factory, demo_encoder, model_cache):
    from lib.ingest.image_index import build_image_index
    from lib.settings import load_settings

    root = tmp_path_factory.mktemp("dated")
    write_library(root)
    workspace = share_model_cache(tmp_path_factory.mktemp("dated-ws"), model_cache)
    settings = load_settings(environ={}, overrides=dict(workspace=str(workspace), dataset_name="dated",
                                                        dataset_path=str(root), num_workers=0))
    build_image_index(settings, demo_encoder, progress=False)
    return settings


@pytest.fixture(scope="module", params=STORES)
def client(request, dated, demo_encoder):
    return create_app(on_store(request, dated), encoder=demo_encoder).test_client()


def search(client, **body):
    response = client.post("/search", json={"k": 100, **body})
    assert response.status_code == 200, response.json
    return response.json


def test_hits_carry_their_capture_time(client):
    results = search(client, query="red circle")["results"]
    assert len(results) == 36
    for hit in results:
        if hit["path"].startswith("scans/"):
            assert hit["captured_from"] == "mtime"
        else:
            assert hit["captured_from"] == "exif" and hit["captured_at"].startswith(hit["path"][:4] + "-03-")


def test_a_date_range_is_applied_inside_the_search(client):
    page = search(client, query="red circle", k=5, date_from="2019-03-01", date_to="2019-12-31")
    assert len(page["results"]) == 5 and page["next_offset"] == 5  # a full page, though most images fail the filter
    every = search(client, query="red circle", date_from="2019-03-01", date_to="2019-12-31")["results"]
    assert len(every) == 12 and {hit["path"][:5] for hit in every} == {"2019/"}
    day = search(client, query="blue", date_from="2020-03-02", date_to="2020-03-02")["results"]  # a whole day
    assert [hit["captured_at"][:10] for hit in day] == ["2020-03-02"]


def test_folder_and_size_filters(client):
    scans = search(client, query="green star", folder="scans/")["results"]
    assert len(scans) == 12 and all(hit["path"].startswith("scans/") for hit in scans)
    assert search(client, query="green star", folder="scan")["results"] == []  # a prefix of whole folder names
    wide = search(client, query="green star", min_width=150, min_height=150)["results"]
    assert len(wide) == 18 and all(hit["width"] >= 150 for hit in wide)


def test_date_order_sorts_the_relevant_results_only(client):
    newest = search(client, query="red circle", sort="newest", k=10)
    dates = [datetime.fromisoformat(hit["captured_at"]) for hit in newest["results"]]
    assert dates == sorted(dates, reverse=True) and len(dates) == 10
    assert newest["relevant"] == 36  # the first k x 10 by relevance (here all 36), then by date
    relevant = search(client, query="red circle", sort="oldest", cutoff="auto")
    dated = [datetime.fromisoformat(hit["captured_at"]) for hit in relevant["results"]]
    assert dated == sorted(dated) and all(hit["score"] >= relevant["cutoff_score"] for hit in relevant["results"])


def test_text_and_hybrid_modes(client):
    seaside = search(client, query="seaside", mode="text")["results"]
    assert len(seaside) == 9 and all(int(hit["path"][-6:-4]) % 4 == 0 for hit in seaside)
    names = search(client, query="circle", mode="text")["results"]  # words of file names and captions
    assert len(names) == 12 and all("red_circle" in hit["path"] for hit in names)
    assert search(client, query="no such word", mode="text")["results"] == []
    hybrid = search(client, query="red seaside", mode="hybrid", k=3)["results"]
    assert int(hybrid[0]["path"][-6:-4]) % 12 == 0  # red (n % 3 == 0) and at the seaside (n % 4 == 0)
    both = search(client, query="blue square", mode="hybrid", folder="2020")["results"]
    assert both and all(hit["path"].startswith("2020/") for hit in both)


def test_unknown_sort_and_mode_are_named(client):
    assert_error(client.post("/search", json={"query": "x", "mode": "fuzzy"}), 400, "mode: Input should be")
    assert_error(client.post("/search", json={"query": "x", "min_width": 0}), 400, "min_width: Input should be")
