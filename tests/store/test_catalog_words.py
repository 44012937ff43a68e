"""The catalog's words read in pictures: stored, folded, matched as substrings, dropped with their images, and
absent from a catalog older than OCR."""
import numpy as np

from lib.store.catalog import Catalog, PartitionRecord
from lib.store.catalog_words import substrings, words_expression
from lib.store.names import fold
from lib.store.records import ImageWords, TextBox
from tests.store.test_catalog_search import fill, record

BOX = ((1, 2), (30, 2), (30, 12), (1, 12))


def words(image_id, *texts, problem=""):
    return ImageWords(image_id, tuple(TextBox(t, 0.99, BOX) for t in texts), problem)


def test_words_are_stored_matched_as_folded_substrings_and_leave_with_their_image(tmp_path):
    catalog = Catalog(tmp_path / "c.sqlite")
    fill(catalog, "d", [record(i, f"{i}.jpg", 100, 100, 0, "") for i in (1, 2, 3, 4)])
    fill(catalog, "other", [record(9, "9.jpg", 100, 100, 0, "", dataset="other")])
    assert [r.id for r in catalog.images_unread("d")] == [1, 2, 3, 4] and catalog.unread_count("d") == 4
    with catalog.transaction() as db:
        written = catalog.put_words(db, "d", [words(1, "ZANZIBAR", "Ferry"), words(2, "Café Zürich"), words(3),
                                              words(4, problem="OCR ran past its limit"), words(77, "gone")])
        catalog.put_words(db, "other", [words(9, "ZANZIBAR")])
    assert written == 4  # an id no longer in the catalog gets nothing
    assert [r.id for r in catalog.images_unread("d")] == [] and catalog.words_counts("d") == {
        "read": 4, "with_words": 2, "failed": 1}
    assert [i for i, _ in catalog.words_search("d", "zanzi", 10)] == [1]  # the other dataset's is not found
    assert [i for i, _ in catalog.words_search("d", "ZURICH", 10)] == [2]
    assert [i for i, _ in catalog.words_search("d", "afé", 10)] == [2]
    assert [i for i, _ in catalog.words_search("d", "zanzi ferr", 10)] == [1]  # every word, anywhere
    assert catalog.words_search("d", "zanzi zurich", 10) == []
    assert catalog.words_search("d", "za", 10) == []  # too short for a trigram
    np.testing.assert_array_equal(catalog.words_matching_ids("d", "zan"), [1])
    assert catalog.words_of([1, 3, 4, 5]) == {1: words(1, "ZANZIBAR", "Ferry"), 3: words(3),
                                               4: words(4, problem="OCR ran past its limit")}
    with catalog.transaction() as db:
        catalog.apply_partition(db, PartitionRecord("d", "p", "f.index", "y", 3), [1], [])
    assert catalog.words_search("d", "zanzi", 10) == [] and 1 not in catalog.words_of([1])
    catalog.drop_dataset("other")
    assert catalog.db.execute("SELECT COUNT(*) FROM image_words_text WHERE dataset = 'other'").fetchone()[0] == 0


def test_any_user_text_is_a_safe_expression():
    for text in ['"', 'a" OR "b', "NEAR(x y)", "*", "zanzi AND", "((((", "\x00abc", "ünïcödé"]:
        expression = words_expression(text)
        assert all(part.startswith('"') and part.endswith('"') for part in expression.split()) or not expression
    assert substrings("Ferry, Timetable! ab") == ["ferry", "timetable"]
    assert fold("Straße ZÜRICH ﬁne") == "strasse zurich fine"


def test_a_catalog_older_than_ocr_has_no_words(tmp_path):
    catalog = Catalog(tmp_path / "c.sqlite")
    fill(catalog, "d", [record(1, "1.jpg", 100, 100, 0, "")])
    catalog.db.executescript("DROP TABLE image_words; DROP TABLE image_words_text; DROP TABLE ocr_choice;")
    old = Catalog(tmp_path / "c.sqlite", readonly=True)  # as a server opens it, before any build migrates it
    assert old.words_search("d", "zanzi", 10) == [] and old.words_of([1]) == {} and old.reads_words("d") is None
    assert old.words_counts("d") == {"read": 0, "with_words": 0, "failed": 0}
    migrated = Catalog(tmp_path / "c.sqlite")  # a builder opening it adds the tables in place
    assert [r.id for r in migrated.images_unread("d")] == [1]
