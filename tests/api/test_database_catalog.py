"""A server with only the store database's URL: no catalog in its index folder, so every catalog question (rows,
filters, text, words, duplicates) is answered from the rows a build copied (lib/store/postgres_catalog.py), the
same as the index folder's catalog answers them."""
from __future__ import annotations

import dataclasses
import os
import shutil
import time

import numpy as np
import pytest
from PIL import Image

from api import create_app
from lib.ingest.store_copy import copy_dataset
from lib.serve.index_set import open_catalog
from lib.store.catalog import Catalog
from lib.store.dataset_figures import read_figures, save_evaluation
from lib.store.postgres_catalog import PostgresCatalog
from lib.store.postgres_pool import StorePool
from lib.store.records import ImageWords, TextBox
from tests.api.test_search_filters import write_library
from tests.api.test_store_outage import answered
from tests.helpers import share_model_cache

LATIN1 = os.fsdecode(b"scans/caf\xe9 cr\xe8me.jpg")  # a name that is not UTF-8 (bytes, in PostgreSQL too)
WORDS = {"2019/red_circle-00.jpg": "ZANZIBAR Stra\u00dfe 12", "2020/blue_square-13.jpg": "Caf\u00e9 menu",
         "scans/green_star-26.jpg": "zanzibar harbour, gate 7"}
QUERIES = ["red", "seaside", "circle seaside", "sca", "2019", "cafe", "nothing", "", "red_circle-00.jpg"]


def box(text: str) -> TextBox:
    return TextBox(text, 0.9, ((0, 0), (9, 0), (9, 5), (0, 5)))


@pytest.fixture(scope="module")
def stores(tmp_path_factory, demo_encoder, model_cache, postgres):
    """(settings of the index folder with the store database, settings of a workspace that has only the
    database's URL): 36 dated pictures, a copy of one, a non-UTF-8 name, words read in three."""
    from lib.ingest.image_index import build_image_index
    from lib.settings import load_settings

    root = tmp_path_factory.mktemp("dbcat")
    write_library(root)
    shutil.copy(root / "2019/red_circle-00.jpg", root / "2020/copy of red.jpg")  # the same bytes twice
    Image.open(root / "scans/green_star-29.jpg").rotate(90).save(root / LATIN1)
    workspace = share_model_cache(tmp_path_factory.mktemp("dbcat-ws"), model_cache)
    stored = load_settings(environ={}, overrides=dict(workspace=str(workspace), dataset_name="dbcat", num_workers=0,
                                                      dataset_path=str(root), store=postgres.database()))
    build_image_index(stored, demo_encoder, progress=False)  # copied as it is built, then calibrated
    pool = StorePool(stored.store)
    try:  # the thresholds calibrated after the copy follow it into the database
        assert PostgresCatalog(pool).figures("dbcat")["duplicates"] == read_figures(stored.indexes_dir,
                                                                                   "dbcat")["duplicates"]
    finally:
        pool.close()
    save_evaluation(stored.indexes_dir, "dbcat", demo_encoder.identity, {"top1": 0.5})
    catalog = Catalog.in_folder(stored.indexes_dir)
    try:
        ids = {r.path: r.id for r in catalog.images("dbcat")}
        with catalog.transaction() as db:
            catalog.put_words(db, "dbcat", [ImageWords(ids[path], (box(text),)) for path, text in WORDS.items()]
                              + [ImageWords(ids["2019/red_circle-03.jpg"], (), "timed out")])
    finally:
        catalog.close()
    copy_dataset(stored, "dbcat")  # the rows with their words, and the evaluation, copied again
    alone = share_model_cache(tmp_path_factory.mktemp("dbcat-alone"), model_cache)
    return stored, dataclasses.replace(stored, workspace=alone)


@pytest.fixture(scope="module")
def catalogs(stores):
    stored, alone = stores
    pool = StorePool(stored.store)
    sqlite = Catalog.in_folder(stored.indexes_dir, readonly=True)
    yield sqlite, open_catalog(alone.indexes_dir, pool)
    sqlite.close()
    pool.close()


def test_a_folder_without_a_catalog_reads_the_databases_rows(catalogs):
    sqlite, database = catalogs
    assert isinstance(database, PostgresCatalog)
    assert database.datasets() == sqlite.datasets() and database.dataset("nope") is None
    assert [(p.name, p.index_sha256, p.count) for p in database.partitions("dbcat")] == \
        [(p.name, p.index_sha256, p.count) for p in sqlite.partitions("dbcat")]
    rows = sqlite.images("dbcat")
    assert database.images("dbcat") == rows and len(rows) == 38
    assert database.images("dbcat", rows[0].partition) == sqlite.images("dbcat", rows[0].partition)
    ids = [r.id for r in rows] + [10**12]
    assert database.images_by_id(ids) == sqlite.images_by_id(ids) and database.image(rows[5].id) == rows[5]
    assert database.texts_of(ids) == sqlite.texts_of(ids) and database.captions_of(ids) == sqlite.captions_of(ids)
    assert database.class_names("dbcat") == sqlite.class_names("dbcat")
    assert database.picture_rows("dbcat", LATIN1) == sqlite.picture_rows("dbcat", LATIN1) != []
    assert database.same_content("dbcat") == sqlite.same_content("dbcat") != []
    assert database.reads_words("dbcat") == sqlite.reads_words("dbcat")


@pytest.mark.parametrize("given", [
    {}, {"folder": "2019"}, {"folder": "/scans/"}, {"folder": "sca"}, {"folder": "/"}, {"min_width": 100},
    {"min_height": 97, "folder": "2020"}, {"date_from_ns": 1_551_398_400 * 10**9},
    {"date_from_ns": 1_551_398_400 * 10**9, "date_to_ns": 1_577_836_799 * 10**9, "min_width": 150},
    {"date_to_ns": 0},
])
def test_filters_pass_the_same_images(catalogs, given):
    sqlite, database = catalogs
    expected = sqlite.filtered_ids("dbcat", **given)
    assert np.array_equal(database.filtered_ids("dbcat", **given), expected)
    assert database.filtered_ids("dbcat", **given).dtype == np.int64


def test_text_and_words_match_the_same_images(catalogs):
    sqlite, database = catalogs
    for query in QUERIES:
        found = database.text_search("dbcat", query, 100)
        assert {i for i, _ in found} == {i for i, _ in sqlite.text_search("dbcat", query, 100)}, query
        assert [s for _, s in found] == sorted((s for _, s in found), reverse=True)
    assert len(database.text_search("dbcat", "seaside", 100)) == 9 and database.text_search("dbcat", "red", 0) == []
    for query in ["zanzi", "ZANZIBAR strasse", "cafe", "harbour gate", "menu zanzibar", "ab", "100%", "a_b"]:
        assert {i for i, _ in database.words_search("dbcat", query, None)} == \
            {i for i, _ in sqlite.words_search("dbcat", query, None)}, query
        assert np.array_equal(database.words_matching_ids("dbcat", query), sqlite.words_matching_ids("dbcat", query))
    assert len(database.words_search("dbcat", "zanzibar", None)) == 2
    ids = [r.id for r in sqlite.images("dbcat")]
    assert database.words_of(ids) == sqlite.words_of(ids) and len(database.words_of(ids)) == 4
    assert database.words_counts("dbcat") == sqlite.words_counts("dbcat") == {"read": 4, "with_words": 3,
                                                                             "failed": 1}


@pytest.fixture(scope="module")
def clients(stores, demo_encoder):
    stored, alone = stores
    return (create_app(stored, encoder=demo_encoder).test_client(),
            create_app(alone, encoder=demo_encoder).test_client())


SEARCHES = [
    {"query": "red circle"}, {"query": "blue square", "folder": "2020", "k": 5}, {"query": "star", "min_width": 150},
    {"query": "red circle", "date_from": "2019-03-01", "date_to": "2019-12-31", "offset": 3},
    {"query": "green star", "ocr": "zanzibar"}, {"query": "a photo", "folder": "scans"},
]


def test_every_route_answers_the_same_from_either_catalog(clients):
    files, database = clients
    for body in SEARCHES:
        body = {"k": 10, **body}
        assert database.post("/search", json=body).json == files.post("/search", json=body).json, body
    for body in ({"query": "seaside", "mode": "text", "k": 20}, {"query": "red seaside", "mode": "hybrid", "k": 20}):
        ranked = [{hit["id"] for hit in client.post("/search", json=body).json["results"]} for client in clients]
        assert ranked[0] == ranked[1] and len(ranked[1]) >= 9, body
    hit = files.post("/search", json={"query": "red circle", "k": 1}).json["results"][0]
    for route in (f"/images/{hit['id']}", f"/thumbnails/{hit['id']}", f"/images/{hit['id']}/text",
                  "/duplicates?near=0.99&similar=0.9", "/duplicates?tier=exact&near=0.99&similar=0.9", "/duplicates",
                  "/evaluations"):
        answers = [files.get(route), database.get(route)]
        assert answers[0].status_code == answers[1].status_code == 200, (route, answers[1].json)
        assert (answers[0].json == answers[1].json) if answers[0].is_json else (answers[0].data == answers[1].data)
    similar = {"image_id": hit["id"], "k": 5}
    assert database.post("/similar", json=similar).json == files.post("/similar", json=similar).json
    [dataset] = database.get("/indexes").json["datasets"]
    assert dataset == files.get("/indexes").json["datasets"][0] and dataset["words"]["with_words"] == 3
    assert database.get("/evaluations").json["datasets"][0]["evaluations"][0]["top1"] == 0.5
    exact = database.get("/duplicates?tier=exact&near=0.99&similar=0.9").json["groups"]
    assert [sorted(m["path"] for m in g["members"]) for g in exact] == [["2019/red_circle-00.jpg",
                                                                         "2020/copy of red.jpg"]]


def test_a_database_only_server_says_503_while_the_database_is_away_and_recovers(stores, demo_encoder, postgres):
    _, alone = stores
    client = create_app(alone, encoder=demo_encoder).test_client()
    before = client.post("/search", json={"query": "red circle", "k": 3})
    assert before.status_code == 200 and len(before.json["results"]) == 3
    postgres.stop()
    try:
        late = create_app(alone, encoder=demo_encoder).test_client()  # started while it is away
        for response in (client.post("/search", json={"query": "blue square", "k": 3}),
                         client.get(f"/images/{before.json['results'][0]['id']}"),
                         late.post("/search", json={"query": "red circle", "k": 3})):
            assert response.status_code == 503 and response.json["error"] == "store unavailable", response.json
        assert "not reachable" in {e["what"]: e["why"] for e in late.get("/indexes").json["left_out"]}["store database"]
    finally:
        postgres.start()
    for server in (client, late):
        after = answered(lambda server=server: server.post("/search", json={"query": "red circle", "k": 3}), 15)
        assert after.status_code == 200 and after.json["results"] == before.json["results"]


def test_a_new_copy_reaches_a_database_only_server(stores, demo_encoder, clients):
    stored, alone = stores
    _, database = clients
    assert database.post("/search", json={"query": "x", "ocr": "lighthouse"}).json["results"] == []
    catalog = Catalog.in_folder(stored.indexes_dir)
    try:
        image = next(r for r in catalog.images("dbcat") if r.path == "2020/blue_square-13.jpg")
        with catalog.transaction() as db:
            catalog.put_words(db, "dbcat", [ImageWords(image.id, (box("LIGHTHOUSE"),))])
    finally:
        catalog.close()
    copy_dataset(stored, "dbcat")  # the partition's rows written again, and the dataset's generation bumped
    deadline = time.time() + 10
    while not (found := database.post("/search", json={"query": "x", "ocr": "lighthouse"}).json["results"]):
        assert time.time() < deadline, "the database-only server did not notice the new rows"
        time.sleep(0.2)
    assert [hit["path"] for hit in found] == ["2020/blue_square-13.jpg"]
