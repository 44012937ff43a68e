"""Any file name in the catalog, losslessly, and shown on one line everywhere else."""
import os
import sqlite3

import pytest

from lib.store.catalog import Catalog, DatasetRecord, ImageRecord, PartitionRecord, SkippedFile
from lib.store.identity import ModelIdentity
from lib.store.names import from_sql, shown, to_sql

NOT_UTF8 = os.fsdecode(b"caf\xe9 \xff.jpg")  # Latin-1 bytes, as an old camera or a Windows share names files
NAMES = ["plain.jpg", "été/ünï.png", NOT_UTF8, "new\nline.jpg", "tab\there.jpg", "back\\slash.jpg", "bell\x07.jpg"]


@pytest.mark.parametrize("name, seen", [
    ("plain/été.jpg", "plain/été.jpg"),
    (NOT_UTF8, "caf\\xe9 \\xff.jpg"),
    ("new\nline\r.jpg", "new\\nline\\r.jpg"),
    ("tab\there.jpg", "tab\\there.jpg"),
    ("back\\slash\\x41.jpg", "back\\\\slash\\\\x41.jpg"),  # a literal \x41 never reads as a byte
    ("bell\x07 nel\x85 ls\u2028.jpg", "bell\\x07 nel\\u0085 ls\\u2028.jpg"),  # \u0085 is a character, \x85 a byte
])
def test_names_are_shown_on_one_line_and_apart(name, seen):
    assert shown(name) == seen
    assert "\n" not in shown(name) and "\t" not in shown(name) and shown(name).encode("utf-8")


def test_only_names_that_are_not_utf8_are_stored_as_bytes():
    assert [type(to_sql(n)) for n in NAMES] == [str, str, bytes, str, str, str, str]
    assert [from_sql(to_sql(n)) for n in NAMES] == NAMES


def test_the_catalog_keeps_any_name(tmp_path):
    model = ModelIdentity("demo", "a" * 64, 8)
    root = tmp_path / os.fsdecode(b"ph\xf6tos")
    catalog = Catalog.in_folder(tmp_path)
    records = [ImageRecord(i, "d", "p", name, "", 1, 1, 10, 20, "s" * 64, "/elsewhere/" + name if i == 3 else "")
               for i, name in enumerate(NAMES, 1)]
    with catalog.transaction() as db:
        catalog.put_dataset(db, DatasetRecord("d", root, "flat", "flat", model))
        catalog.apply_partition(db, PartitionRecord("d", "p", "f.index", "x", len(records)), [], records)
        catalog.set_skipped(db, "d", {n: SkippedFile(n, 1, 2, "why") for n in NAMES})
    catalog.close()
    again = Catalog.in_folder(tmp_path, readonly=True)
    assert again.images("d") == records and again.images_by_id([3])[3] == records[2]
    assert sorted(again.skipped("d")) == sorted(NAMES) and again.dataset("d").root == root
    writer = Catalog.in_folder(tmp_path)
    with writer.transaction() as db:  # a name stored as bytes is found again by its name: a rebuild replaces it
        writer.apply_partition(db, PartitionRecord("d", "p", "f.index", "x", 1), [],
                               [ImageRecord(99, "d", "p", NOT_UTF8, "", 2, 2, 10, 20, "t" * 64)])
    assert [r.id for r in writer.images("d") if r.path == NOT_UTF8] == [99]


def test_an_old_catalog_gets_the_link_column_in_place(tmp_path):
    db = sqlite3.connect(tmp_path / "catalog.sqlite")
    db.executescript("CREATE TABLE images (id INTEGER PRIMARY KEY AUTOINCREMENT, dataset TEXT NOT NULL, "
                     "partition TEXT NOT NULL, path TEXT NOT NULL, class_name TEXT NOT NULL, width INTEGER NOT NULL, "
                     "height INTEGER NOT NULL, bytes INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, "
                     "sha256 TEXT NOT NULL, UNIQUE (dataset, path));"
                     "INSERT INTO images VALUES (1, 'd', 'p', 'a.jpg', '', 1, 1, 10, 20, 'abc');")
    db.commit()
    db.close()
    readonly = Catalog.in_folder(tmp_path, readonly=True)
    assert readonly.image(1).link_target == ""  # the server reads an old catalog as it is
    readonly.close()
    catalog = Catalog.in_folder(tmp_path)
    assert [row[1] for row in catalog.db.execute("PRAGMA table_info(images)")][-12:] == [
        "link_target", "perceptual_hash", "captured_ns", "captured_from", "camera", "orientation", "folder",
        "scene", "video_start", "video_end", "frame_s", "region"]
    assert [row[1] for row in catalog.db.execute("PRAGMA table_info(datasets)")][-1] == "regions"
    assert catalog.image(1).path == "a.jpg" and catalog.image(1).media == "image"


def test_an_old_catalog_makes_room_for_scenes_keeping_its_words_and_its_ids(tmp_path):
    catalog = Catalog.in_folder(tmp_path)
    catalog.close()
    db = sqlite3.connect(tmp_path / "catalog.sqlite")  # as written before videos: one row per path
    sql = db.execute("SELECT sql FROM sqlite_master WHERE name = 'images'").fetchone()[0]
    db.executescript(f"DROP TABLE images; {sql[:sql.index('scene INTEGER')].rstrip()} UNIQUE (dataset, path));")
    db.executescript("INSERT INTO datasets (name, root, layout, index_type, model) VALUES ('d', '', 'flat', 'flat', "
                     "'{}');"
                     "INSERT INTO images (id, dataset, partition, path, class_name, width, height, bytes, mtime_ns, "
                     "sha256) VALUES (7, 'd', 'p', 'a.jpg', '', 1, 1, 10, 20, 'abc');"
                     "INSERT INTO image_words VALUES (7, 'd', '[]', 0, '');"
                     "UPDATE sqlite_sequence SET seq = 40 WHERE name = 'images';"
                     "INSERT INTO sqlite_sequence VALUES ('images', 50);")  # as next_ids wrote: a row per reservation
    db.commit()
    db.close()
    catalog = Catalog.in_folder(tmp_path)
    assert catalog.image(7).path == "a.jpg" and catalog.words_of([7])  # the copy did not cascade into image_words
    with catalog.transaction() as db:
        assert catalog.next_ids(db, 2) == [51, 52]
        catalog.apply_partition(db, PartitionRecord("d", "p", "f", "s", 3), [], [
            ImageRecord(i, "d", "p", "v.mp4", "", 4, 4, 10, 20, "v" * 64, scene=n) for n, i in enumerate((51, 52))])
    assert [(r.path, r.scene) for r in catalog.images("d")] == [("a.jpg", -1), ("v.mp4", 0), ("v.mp4", 1)]
    assert catalog.db.execute("SELECT COUNT(*) FROM sqlite_sequence WHERE name = 'images'").fetchone()[0] == 1
