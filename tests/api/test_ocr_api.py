"""Words read in pictures through the API: text and hybrid search, the `ocr` filter, `text_matches`, and
GET /images/<id>/text, on a library of drawn shapes with a few photographed signs among them."""
import random

import pytest

from api import create_app
from lib.data.rendered_words import photo_without_words, sign
from lib.data.synthetic import Scene, draw_scene
from lib.ingest.image_index import build_image_index
from lib.settings import load_settings
from lib.store.catalog import Catalog
from lib.store.records import ImageWords, TextBox
from tests.api.test_api import assert_error
from tests.helpers import share_model_cache

SIGNS = {  # names that say nothing, so that only the read text can match
    "sign_a.jpg": "FERRY TIMETABLE", "sign_b.jpg": "ZANZIBAR", "sign_c.jpg": "Café Zürich", "sign_d.jpg": "Straße"}


def write_library(root):
    rng = random.Random(3)
    for n in range(24):
        colour, shape = ("red", "circle") if n % 2 else ("blue", "square")
        draw_scene(Scene(colour, shape, 1, "large", "plain"), rng, 96).save(root / f"shape_{n:02d}.png")
    for n, (name, words) in enumerate(SIGNS.items()):
        picture = photo_without_words(900 + n).image
        plate = sign(tuple(words.split()), 30, random.Random(n))
        picture.paste(plate, (60, 220), plate)
        picture.save(root / name, quality=92)


@pytest.fixture(scope="module")
def library(tmp_path_factory, demo_encoder, model_cache):
    """The library built without OCR (and a client made on it), then built again with --ocr."""
    root = tmp_path_factory.mktemp("signs")
    write_library(root)
    workspace = share_model_cache(tmp_path_factory.mktemp("signs-ws"), model_cache)

    def settings(**extra):
        return load_settings(environ={}, overrides=dict(workspace=str(workspace), dataset_name="signs",
                                                        dataset_path=str(root), num_workers=0, ocr_workers=1,
                                                        calibration_images=0, **extra))

    build_image_index(settings(), demo_encoder, progress=False)  # vectors only: searchable, no text yet
    client = create_app(settings(), encoder=demo_encoder).test_client()
    assert search(client, query="zanzibar", mode="text")["results"] == []
    report = build_image_index(settings(ocr="on"), demo_encoder, progress=False)
    assert report.words_read == 28 and report.encoded == 0
    return client, settings()


def search(client, **body):
    response = client.post("/search", json={"k": 30, **body})
    assert response.status_code == 200, response.json
    return response.json


def paths(page):
    return [hit["path"] for hit in page["results"]]


def test_the_server_finds_words_committed_after_it_started(library):
    client, _ = library  # the client was made before the OCR build ran, and is not restarted
    page = search(client, query="zanzi", mode="text")
    assert paths(page) == ["sign_b.jpg"]
    [match] = page["results"][0]["text_matches"]
    assert match["text"] == "ZANZIBAR" and match["confidence"] > 0.85
    width, height = page["results"][0]["width"], page["results"][0]["height"]
    assert all(0 <= x <= width and 0 <= y <= height for x, y in match["box"]) and len(match["box"]) == 4


def test_substrings_match_with_case_and_accents_folded(library):
    client, _ = library
    assert paths(search(client, query="zurich", mode="text")) == ["sign_c.jpg"]
    assert paths(search(client, query="CAFE", mode="text")) == ["sign_c.jpg"]
    assert paths(search(client, query="strasse", mode="text")) == ["sign_d.jpg"]
    assert paths(search(client, query="imetab", mode="text")) == ["sign_a.jpg"]
    assert search(client, query='"zanzibar" OR NEAR(x', mode="text")["results"] == []  # no FTS5 syntax


def test_hybrid_finds_the_sign_that_clip_alone_ranks_low(library):
    client, _ = library
    clip = paths(search(client, query="ferry timetable"))
    hybrid = search(client, query="ferry timetable", mode="hybrid")
    assert paths(hybrid)[0] == "sign_a.jpg" and clip.index("sign_a.jpg") > 0
    assert [m["text"] for m in hybrid["results"][0]["text_matches"]] == ["FERRY TIMETABLE"]
    assert all(hit["text_matches"] is None for hit in hybrid["results"][1:])


def test_the_ocr_filter_keeps_images_whose_text_matches(library):
    client, _ = library
    page = search(client, query="red circle", ocr="zanz")
    assert paths(page) == ["sign_b.jpg"] and page["results"][0]["text_matches"][0]["text"] == "ZANZIBAR"
    assert search(client, query="red circle", ocr="nowhere")["results"] == []
    response = client.post("/search", json={"query": "red circle", "ocr": "zz"})
    assert_error(response, 400, "three letters")


def test_image_text_gives_the_boxes(library):
    client, settings = library
    catalog = Catalog.in_folder(settings.indexes_dir, readonly=True)
    by_path = {record.path: record for record in catalog.images("signs")}
    answer = client.get(f"/images/{by_path['sign_a.jpg'].id}/text").json
    assert answer["read"] and answer["problem"] == "" and answer["text"] == "FERRY TIMETABLE"
    assert (answer["width"], answer["height"]) == (800, 600) and len(answer["boxes"]) == 1
    plain = client.get(f"/images/{by_path['shape_00.png'].id}/text").json
    assert plain["read"] and plain["boxes"] == [] and plain["text"] == ""
    assert_error(client.get("/images/987654/text"), 404, "987654")
    [dataset] = client.get("/indexes").json["datasets"]
    assert dataset["words"] == {"read": 28, "with_words": 4, "failed": 0}


def test_words_committed_while_a_server_runs_reach_a_filtered_search_it_has_cached(library):
    """A build commits words without a new index set (no generation bump): a ranked list cached for an `ocr`
    filter must not hide the images that gained words since."""
    client, settings = library
    assert paths(search(client, query="red circle", ocr="harbour")) == []  # the query's list is cached now
    catalog = Catalog.in_folder(settings.indexes_dir)
    shape = next(r for r in catalog.images("signs") if r.path == "shape_01.png")
    before = catalog.words_of([shape.id])[shape.id]
    generation = catalog.generation()
    with catalog.transaction() as db:
        box = TextBox("HARBOUR", 0.99, ((1, 1), (9, 1), (9, 5), (1, 5)))
        catalog.put_words(db, "signs", [ImageWords(shape.id, (box,))])
    try:
        assert catalog.generation() == generation
        assert paths(search(client, query="red circle", ocr="harbour")) == ["shape_01.png"]
    finally:
        with catalog.transaction() as db:
            catalog.put_words(db, "signs", [before])
