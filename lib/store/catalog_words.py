"""The catalog's tables of words read in pictures (OCR) and their queries; Catalog inherits these methods.

`image_words` has one row per image OCR has been run on: its boxes as JSON (text, confidence, corners) and,
when it could not be read, why; an image without a row has not been read yet, which is how a build knows what
to read. The whole text of each image with words is also a row of the FTS5 table `image_words_text`, tokenized
into trigrams so that any substring of three or more characters matches ('zanzi' finds 'ZANZIBAR'); the text
is stored folded (lib/store/names.fold: case, accents, compatibility forms), and queries are folded the same
way, because SQLite before 3.45 cannot remove diacritics in a trigram table. `ocr_choice` remembers per
dataset whether its builds read text, so that a build given neither --ocr nor --no-ocr does what the last did.
"""
from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable

import numpy as np

from lib.store.names import fold
from lib.store.records import ImageRecord, ImageWords, TextBox

WORDS_SCHEMA = """
CREATE TABLE IF NOT EXISTS image_words (
    id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
    dataset TEXT NOT NULL,
    boxes TEXT NOT NULL,
    worded INTEGER NOT NULL,
    problem TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS image_words_dataset ON image_words (dataset, worded, problem);
CREATE VIRTUAL TABLE IF NOT EXISTS image_words_text USING fts5(words, dataset UNINDEXED, tokenize = 'trigram');
CREATE TABLE IF NOT EXISTS ocr_choice (
    dataset TEXT PRIMARY KEY REFERENCES datasets(name) ON DELETE CASCADE,
    reads INTEGER NOT NULL
);
"""
MIN_SUBSTRING = 3  # a trigram index finds substrings of three characters or more
MAX_SUBSTRINGS = 16


def substrings(text: str) -> list[str]:
    """The folded words of a query that a trigram index can look up (three characters or more), each once."""
    words = [word for word in fold(text).split() if len(word.strip("\"'.,;:!?()[]{}")) >= MIN_SUBSTRING]
    return list(dict.fromkeys(word.strip("\"'.,;:!?()[]{}") for word in words))[:MAX_SUBSTRINGS]


def words_expression(text: str) -> str:
    """An FTS5 MATCH expression requiring every substring (each a quoted string: no user text is FTS5 syntax)."""
    return " ".join('"' + word.replace('"', '""') + '"' for word in substrings(text))


def sorted_ids(found: Iterable[tuple[int, float]]) -> np.ndarray:
    """The ids of (id, score) matches, sorted as a filter's ids are (int64)."""
    ids = np.array([i for i, _ in found], np.int64)
    ids.sort()
    return ids


def boxes_json(boxes: Iterable[TextBox]) -> str:
    return json.dumps([box.as_json() for box in boxes], ensure_ascii=False)


def boxes_from_json(text: str) -> tuple[TextBox, ...]:
    return boxes_from_data(json.loads(text))


def boxes_from_data(boxes: list[dict]) -> tuple[TextBox, ...]:
    """TextBoxes from the JSON of `boxes_json`, parsed."""
    return tuple(TextBox(b["text"], float(b["confidence"]), tuple((int(x), int(y)) for x, y in b["box"]))
                 for b in boxes)


class CatalogWords:
    db: sqlite3.Connection
    images_by_id: Callable[[Iterable[int]], dict[int, ImageRecord]]  # Catalog's

    def images_unread(self, dataset: str, partition: str | None = None) -> list[ImageRecord]:
        """The dataset's pictures (or one partition's) that OCR has not been run on, in id order (scenes of videos
        are not read)."""
        where = "" if partition is None else " AND i.partition = ?"
        rows = self.db.execute(f"SELECT i.id FROM images i LEFT JOIN image_words w ON w.id = i.id "
                               f"WHERE i.dataset = ?{where} AND w.id IS NULL AND i.scene = -1 ORDER BY i.id",
                               (dataset,) if partition is None else (dataset, partition))
        ids = [int(row[0]) for row in rows]
        found: dict[int, ImageRecord] = {}
        for start in range(0, len(ids), 10_000):  # under SQLite's limit of bound variables
            found.update(self.images_by_id(ids[start:start + 10_000]))
        return [found[i] for i in ids if i in found]

    def unread_count(self, dataset: str) -> int:
        row = self.db.execute("SELECT COUNT(*) FROM images i LEFT JOIN image_words w ON w.id = i.id "
                              "WHERE i.dataset = ? AND w.id IS NULL AND i.scene = -1", (dataset,)).fetchone()
        return int(row[0])

    def put_words(self, db: sqlite3.Connection, dataset: str, results: Iterable[ImageWords]) -> int:
        """Within a transaction: what OCR read in these images, for those still in the catalog (one removed while
        it was read gets nothing). Returns how many were written."""
        results = [r for r in results if db.execute("SELECT 1 FROM images WHERE id = ?", (r.id,)).fetchone()]
        ids = [(r.id,) for r in results]
        db.executemany("DELETE FROM image_words_text WHERE rowid = ?", ids)
        db.executemany("INSERT OR REPLACE INTO image_words (id, dataset, boxes, worded, problem) "
                       "VALUES (?, ?, ?, ?, ?)",
                       [(r.id, dataset, boxes_json(r.boxes), int(bool(r.boxes)), r.problem) for r in results])
        db.executemany("INSERT INTO image_words_text (rowid, words, dataset) VALUES (?, ?, ?)",
                       [(r.id, fold(r.text), dataset) for r in results if r.boxes])
        return len(results)

    def drop_words(self, db: sqlite3.Connection, ids: Iterable[int]) -> None:
        """Within a transaction: the text rows of images that leave (their image_words rows go by cascade)."""
        db.executemany("DELETE FROM image_words_text WHERE rowid = ?", [(i,) for i in ids])

    def words_of(self, ids: Iterable[int]) -> dict[int, ImageWords]:
        """What OCR read in each of these images that it has been run on."""
        found: dict[int, ImageWords] = {}
        ids = list(ids)
        try:
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                rows = self.db.execute(f"SELECT id, boxes, problem FROM image_words WHERE id IN "
                                       f"({','.join('?' * len(chunk))})", chunk)
                found.update({int(i): ImageWords(int(i), boxes_from_json(b), p) for i, b, p in rows})
        except sqlite3.OperationalError as err:
            if "no such table" not in str(err):
                raise
        return found

    def words_search(self, dataset: str, text: str, limit: int | None) -> list[tuple[int, float]]:
        """(id, -bm25) of the dataset's images whose read text holds every word of `text` as a substring (three
        characters or more; case and accents folded), best first; [] when no word is long enough, or when the
        catalog is older than OCR (a server may read one before a build migrates it)."""
        expression = words_expression(text)
        if not expression or (limit is not None and limit <= 0):
            return []
        try:
            rows = self.db.execute("SELECT rowid, bm25(image_words_text) FROM image_words_text WHERE "
                                   "image_words_text MATCH ? AND dataset = ? ORDER BY bm25(image_words_text), rowid "
                                   "LIMIT ?", (expression, dataset, -1 if limit is None else limit)).fetchall()
        except sqlite3.OperationalError as err:
            if "no such table" not in str(err):
                raise
            return []  # a catalog written before OCR, opened read-only: no words have been read
        return [(int(image_id), -float(score)) for image_id, score in rows]

    def words_matching_ids(self, dataset: str, text: str) -> np.ndarray:
        """The sorted ids of the dataset's images whose read text holds every word of `text` (the `ocr` filter)."""
        return sorted_ids(self.words_search(dataset, text, None))

    def words_counts(self, dataset: str) -> dict[str, int]:
        """How many of the dataset's images OCR has read, found words in, and could not read (0.1 s for 1M
        images read, from the covering index)."""
        try:
            read, worded, failed = self.db.execute(  # from the index on (dataset, worded, problem) alone
                "SELECT COUNT(*), COALESCE(SUM(worded), 0), COALESCE(SUM(problem != ''), 0) FROM image_words "
                "WHERE dataset = ?", (dataset,)).fetchone()
        except sqlite3.OperationalError:
            return {"read": 0, "with_words": 0, "failed": 0}
        return {"read": int(read), "with_words": int(worded), "failed": int(failed)}

    def reads_words(self, dataset: str) -> bool | None:
        """Whether the dataset's last build read text (None: never said)."""
        try:
            row = self.db.execute("SELECT reads FROM ocr_choice WHERE dataset = ?", (dataset,)).fetchone()
        except sqlite3.OperationalError:
            return None
        return None if row is None else bool(row[0])

    def set_reads_words(self, db: sqlite3.Connection, dataset: str, reads: bool) -> None:
        db.execute("INSERT INTO ocr_choice VALUES (?, ?) ON CONFLICT (dataset) DO UPDATE SET reads = excluded.reads",
                   (dataset, int(reads)))
