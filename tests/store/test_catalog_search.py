"""The catalog's search-side queries: filters on capture facts, folders and sizes; text matches in names and
captions, whatever the user types."""
import os
import sqlite3

import numpy as np
import pytest

from lib.errors import IndexMismatchError
from lib.store.catalog import Catalog, DatasetRecord, ImageRecord, PartitionRecord
from lib.store.catalog_search import match_expression
from lib.store.identity import ModelIdentity
from lib.store.names import folder_of
from lib.store.records import ImageText

DAY = 86_400 * 10**9
LATIN1 = os.fsdecode(b"f\xeate")  # a folder name that is not UTF-8
ROWS = [  # id, path, width, height, captured_ns, captured_from
    (1, "top.jpg", 100, 50, 1 * DAY, "exif"),
    (2, "a/b/one.jpg", 800, 600, 2 * DAY, "exif"),
    (3, "a/b/c/two.jpg", 1600, 1200, 3 * DAY, "mtime"),
    (4, "a/bc/three.jpg", 800, 600, 4 * DAY, "exif"),
    (5, f"a/b/{LATIN1}/four.jpg", 640, 480, 5 * DAY, "exif"),
    (6, f"{LATIN1}/x/five.jpg", 640, 480, 6 * DAY, "mtime"),
    (7, "a/undated.jpg", 4000, 3000, 0, ""),
]


def record(image_id, path, width, height, captured_ns, captured_from, dataset="d"):
    return ImageRecord(image_id, dataset, "p", path, "", width, height, 10, 20, "s" * 64, "", b"", captured_ns,
                       captured_from, "", 1, folder_of(path))


def fill(catalog, dataset, records):
    with catalog.transaction() as db:
        catalog.put_dataset(db, DatasetRecord(dataset, None, "flat", "flat", ModelIdentity("demo", "a" * 64, 8)))
        catalog.apply_partition(db, PartitionRecord(dataset, "p", "f.index", "x", len(records)), [], records)


@pytest.fixture
def catalog(tmp_path):
    catalog = Catalog.in_folder(tmp_path)
    fill(catalog, "d", [record(*row) for row in ROWS])
    fill(catalog, "other", [record(100, "a/b/one.jpg", 800, 600, 2 * DAY, "exif", "other")])
    return catalog


def ids(array):
    assert array.dtype == np.int64
    return array.tolist()


def test_no_filter_is_every_image_of_the_dataset_sorted(catalog):
    assert ids(catalog.filtered_ids("d")) == [1, 2, 3, 4, 5, 6, 7]
    assert ids(catalog.filtered_ids("nothing")) == []


def test_dates_are_inclusive_and_leave_out_images_whose_time_was_never_read(catalog):
    assert ids(catalog.filtered_ids("d", date_from_ns=2 * DAY, date_to_ns=4 * DAY)) == [2, 3, 4]
    assert ids(catalog.filtered_ids("d", date_to_ns=2 * DAY)) == [1, 2]
    assert ids(catalog.filtered_ids("d", date_from_ns=6 * DAY)) == [6]
    assert ids(catalog.filtered_ids("d", date_from_ns=-10 * DAY)) == [1, 2, 3, 4, 5, 6]  # not 7: no date


def test_sizes(catalog):
    assert ids(catalog.filtered_ids("d", min_width=800)) == [2, 3, 4, 7]
    assert ids(catalog.filtered_ids("d", min_height=601)) == [3, 7]
    assert ids(catalog.filtered_ids("d", min_width=800, min_height=600)) == [2, 3, 4, 7]


@pytest.mark.parametrize("folder, expected", [
    ("a/b", [2, 3, 5]),  # itself and everything under it, never a/bc
    ("/a/b/", [2, 3, 5]),
    ("a/b/c", [3]),
    ("a", [2, 3, 4, 5, 7]),
    ("a/bc", [4]),
    ("a/b/c/two.jpg", []),  # a file is not a folder
    ("b", []),  # a prefix of the path, not of any part of it
    ("", [1, 2, 3, 4, 5, 6, 7]),
    ("/", [1, 2, 3, 4, 5, 6, 7]),
    (f"a/b/{LATIN1}", [5]),
    (LATIN1, [6]),
    (f"{LATIN1}/x", [6]),
])
def test_folder_prefix(catalog, folder, expected):
    assert ids(catalog.filtered_ids("d", folder=folder)) == expected


def test_filters_combine(catalog):
    assert ids(catalog.filtered_ids("d", folder="a", min_width=700, date_from_ns=3 * DAY)) == [3, 4]
    assert ids(catalog.filtered_ids("other", folder="a/b", date_to_ns=2 * DAY)) == [100]


def test_the_fields_come_back_on_the_records(catalog):
    found = catalog.images_by_id([3, 5])
    assert (found[3].captured_ns, found[3].captured_from, found[3].folder) == (3 * DAY, "mtime", "a/b/c")
    assert found[5].folder == f"a/b/{LATIN1}" and found[5].capture.captured_from == "exif"


def put_texts(catalog, dataset, *texts):
    with catalog.transaction() as db:
        catalog.put_image_text(db, dataset, texts)


def test_text_search_ranks_names_and_captions(catalog):
    put_texts(catalog, "d", ImageText(1, "IMG 2041 holiday Beach jpg holidayBeach", "", "sunset at the sea"),
              ImageText(2, "one jpg", "a b", "a beach, a beach and more beach"),
              ImageText(3, "two jpg", "a b c", "", "Café au lait"))
    put_texts(catalog, "other", ImageText(100, "beach jpg", "", ""))
    found = catalog.text_search("d", "beach", 10)
    assert [i for i, _ in found] == [2, 1] and found[0][1] > found[1][1]  # higher is better
    assert [i for i, _ in catalog.text_search("d", "HOLI", 10)] == [1]  # prefix, any case
    assert [i for i, _ in catalog.text_search("d", "holidaybeach", 10)] == [1]
    assert [i for i, _ in catalog.text_search("d", "cafe", 10)] == [3]  # accents ignored
    assert [i for i, _ in catalog.text_search("d", "sun sea", 10)] == [1]  # every word
    assert catalog.text_search("d", "beach sunset nowhere", 10) == []
    assert len(catalog.text_search("d", "beach", 1)) == 1 and catalog.text_search("d", "beach", 0) == []


@pytest.mark.parametrize("text", ['"', '"beach', "beach*", "*", "-beach", "beach -sea", "NEAR(beach sea)",
                                  "beach NEAR sea", "name:beach", "caption : sea", "AND", "OR beach", "NOT",
                                  "^beach", "(beach", "beach)", "{name}: beach", "'; DROP TABLE images; --",
                                  "b\u00e9ach \u6d77", "\U0001f3d6\ufe0f beach", "\u0301beach", "be\x00ach",
                                  "\\", "beach\u200d", "+", "a.b.c"])
def test_no_user_text_is_an_fts_syntax_error(catalog, text):
    put_texts(catalog, "d", ImageText(1, "IMG beach jpg", "", "sea"))
    assert isinstance(catalog.text_search("d", text, 5), list)


@pytest.mark.parametrize("text", ["", "   ", "\U0001f3d6\ufe0f", "*", '""', "-", "___", "..."])
def test_text_without_words_matches_nothing(catalog, text):
    put_texts(catalog, "d", ImageText(1, "IMG beach jpg", "", ""))
    assert catalog.text_search("d", text, 5) == [] and match_expression(text) == ""


def test_match_expression_quotes_every_word():
    assert match_expression('say "NEAR" -x* col:umn') == '"say"* "NEAR"* "x"* "col"* "umn"*'
    assert match_expression("a a b " + " ".join(f"w{i}" for i in range(100))).count("*") == 32


def test_a_removed_image_leaves_the_text_table(catalog):
    put_texts(catalog, "d", ImageText(2, "one jpg", "a b", ""), ImageText(4, "three jpg", "a bc", ""))
    assert {i for i, _ in catalog.text_search("d", "jpg", 10)} == {2, 4}
    with catalog.transaction() as db:
        catalog.apply_partition(db, PartitionRecord("d", "p", "f.index", "x", 6), [2], [])
    assert [i for i, _ in catalog.text_search("d", "jpg", 10)] == [4]
    assert set(catalog.image_text_state("d")) == {4}
    catalog.drop_dataset("d")
    assert catalog.image_text_state("d") == {}


def test_an_old_catalog_gets_folders_in_place_and_a_reader_of_it_a_clear_error(tmp_path):
    db = sqlite3.connect(tmp_path / "catalog.sqlite")
    db.executescript("CREATE TABLE datasets (name TEXT PRIMARY KEY, root TEXT NOT NULL, layout TEXT NOT NULL, "
                     "index_type TEXT NOT NULL, model TEXT NOT NULL);"
                     "CREATE TABLE images (id INTEGER PRIMARY KEY AUTOINCREMENT, dataset TEXT NOT NULL, "
                     "partition TEXT NOT NULL, path TEXT NOT NULL, class_name TEXT NOT NULL, width INTEGER NOT NULL, "
                     "height INTEGER NOT NULL, bytes INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, "
                     "sha256 TEXT NOT NULL, UNIQUE (dataset, path));"
                     "INSERT INTO images VALUES (1, 'd', 'p', 'a/b/c.jpg', '', 1, 1, 10, 20, 'abc');"
                     "INSERT INTO images VALUES (2, 'd', 'p', 'top.jpg', '', 1, 1, 10, 20, 'abc');")
    db.execute("INSERT INTO images VALUES (3, 'd', 'p', ?, '', 1, 1, 10, 20, 'abc')", (os.fsencode(f"{LATIN1}/x.jpg"),))
    db.commit()
    db.close()
    readonly = Catalog.in_folder(tmp_path, readonly=True)
    assert readonly.image(1).captured_from == "" and readonly.image(1).orientation == 1
    with pytest.raises(IndexMismatchError, match="build_image_index.py"):
        readonly.filtered_ids("d", folder="a")
    with pytest.raises(IndexMismatchError, match="build_image_index.py"):
        readonly.text_search("d", "c", 5)
    readonly.close()
    catalog = Catalog.in_folder(tmp_path)
    assert [catalog.image(i).folder for i in (1, 2, 3)] == ["a/b", "", LATIN1]
    assert ids(catalog.filtered_ids("d", folder="a")) == [1] and ids(catalog.filtered_ids("d", folder=LATIN1)) == [3]
    assert catalog.text_search("d", "c", 5) == []
