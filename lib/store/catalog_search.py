"""The catalog's queries for the read side's filters and text matches, and the full-text table a build fills.

Filters run on the capture facts of `images` (captured_ns, folder, width, height; indexed in INDEXES). The
text of an image (its file and folder names split into words, its captions) is a row of the FTS5 table
`image_text` with the image id as rowid; `text_search` builds its MATCH expression only from quoted word
prefixes, so no user text is ever read as FTS5 query syntax. Catalog inherits these methods.
"""
from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from lib.errors import IndexMismatchError
from lib.store.names import folder_of, from_sql, to_sql
from lib.store.records import CaptureFacts, ImageText

TEXT_SCHEMA = """
CREATE VIRTUAL TABLE IF NOT EXISTS image_text USING fts5(
    name, folders, caption, sidecar, dataset UNINDEXED, sidecar_stamp UNINDEXED,
    tokenize = 'unicode61 remove_diacritics 2', prefix = '2 3'
);
"""
# On columns that older catalogs get from MIGRATIONS, so created after them. Each holds the id (the rowid), so a
# single filter is answered from its index alone: 0.1-7 ms for 100,000 images.
INDEXES = """
CREATE INDEX IF NOT EXISTS images_captured ON images (dataset, captured_ns, captured_from);
CREATE INDEX IF NOT EXISTS images_folder ON images (dataset, folder);
CREATE INDEX IF NOT EXISTS images_width ON images (dataset, width);
CREATE INDEX IF NOT EXISTS images_height ON images (dataset, height);
"""
ESTIMATE_CAP = 100_000  # rows counted of each filter to choose the one that leads (at most ~5 ms each)
MAX_QUERY_WORDS = 32
QUERY_WORD = re.compile(r"[^\W_]+")  # letters and digits: what unicode61 keeps of a query, and nothing else
OLD_CATALOG = ("the catalog predates capture facts and text matching; run build_image_index.py on the dataset "
               "to add them (nothing is re-encoded)")


def match_expression(text: str) -> str:
    """An FTS5 MATCH expression for any user text: each word a quoted prefix, all of them required ('' for none);
    a word said twice counts once, and words past the first MAX_QUERY_WORDS are left out (50,000 words took
    0.6 s to parse)."""
    words = list(dict.fromkeys(QUERY_WORD.findall(text)))[:MAX_QUERY_WORDS]
    return " ".join(f'"{word}"*' for word in words)


Filter = tuple[str, list[Any]]  # SQL with {p} before each column ('' lets SQLite use its index, '+' does not), args


def folder_filter(dataset: str, folder: str) -> Filter:
    """A folder and every folder under it ('a/b': 'a/b', 'a/b/c', never 'a/bc'). A name that is not UTF-8 is a
    BLOB (lib/store/names.py), which sorts apart from TEXT, so under a UTF-8 folder both are searched. Each term
    names the dataset, so that SQLite searches the index once per term (a multi-index OR)."""
    raw = os.fsencode(folder)
    args: list[Any] = [dataset, raw, dataset, raw + b"/", raw + b"0"]  # '0' is the character after '/'
    if isinstance(to_sql(folder), str):
        args += [dataset, folder, dataset, folder + "/", folder + "0"]
    term = "({p}dataset = ? AND {p}folder = ?) OR ({p}dataset = ? AND {p}folder >= ? AND {p}folder < ?)"
    return "(" + " OR ".join([term] * (len(args) // 5)) + ")", args


def filters(dataset: str, date_from_ns: int | None, date_to_ns: int | None, folder: str | None,
            min_width: int | None, min_height: int | None) -> list[Filter]:
    """Each filter given as SQL that one index answers; rows whose capture time was never read pass no date."""
    found: list[Filter] = []
    if date_from_ns is not None or date_to_ns is not None:
        bounds = [-(2**63) if date_from_ns is None else date_from_ns, 2**63 - 1 if date_to_ns is None else date_to_ns]
        found.append(("{p}dataset = ? AND {p}captured_ns >= ? AND {p}captured_ns <= ? AND captured_from != ''",
                      [dataset, *bounds]))
    if folder is not None and folder.strip("/"):
        found.append(folder_filter(dataset, folder.strip("/")))
    found += [(f"{{p}}dataset = ? AND {{p}}{column} >= ?", [dataset, least])
              for column, least in (("width", min_width), ("height", min_height)) if least is not None]
    return found or [("dataset = ?", [dataset])]


def captions_from(rows: Iterable[tuple[Any, ...]]) -> dict[int, str]:
    """id -> caption of the (id, caption, sidecar text) rows that have one: its caption, else its sidecar's."""
    texts = {int(i): (caption or sidecar or "").strip() for i, caption, sidecar in rows}
    return {image_id: text for image_id, text in texts.items() if text}


def fill_folders(db: sqlite3.Connection) -> None:
    """The folder of every row of a catalog that has just been given the column."""
    rows = db.execute("SELECT id, path FROM images").fetchall()
    db.executemany("UPDATE images SET folder = ? WHERE id = ?", [(to_sql(folder_of(from_sql(p))), i) for i, p in rows])


class CatalogSearch:
    db: sqlite3.Connection

    def _changed(self, db: sqlite3.Connection) -> None: ...

    def filtered_ids(self, dataset: str, *, date_from_ns: int | None = None, date_to_ns: int | None = None,
                     folder: str | None = None, min_width: int | None = None,
                     min_height: int | None = None) -> np.ndarray:
        """The sorted int64 ids of the dataset's images that pass every filter given: capture time within
        [date_from_ns, date_to_ns] (rows whose time was never read are left out), under `folder` (a path
        prefix relative to the root; '' or '/' is the whole dataset), at least min_width x min_height pixels."""
        given = filters(dataset, date_from_ns, date_to_ns, folder, min_width, min_height)
        cursor = self.db.cursor()
        cursor.row_factory = None
        try:
            first = min(range(len(given)), key=lambda k: self._rows_up_to(given[k])) if len(given) > 1 else 0
            sql = " AND ".join(f"({template.format(p='' if k == first else '+')})"
                               for k, (template, _) in enumerate(given))
            rows = cursor.execute(f"SELECT id FROM images WHERE {sql}", [a for _, args in given for a in args])
            ids = np.fromiter((row[0] for row in rows), dtype=np.int64)
        except sqlite3.OperationalError as err:
            raise IndexMismatchError(f"{OLD_CATALOG} ({err})") from None
        ids.sort()
        return ids

    def _rows_up_to(self, given: Filter) -> int:
        """How many rows pass one filter, counted in its index up to ESTIMATE_CAP: the most selective filter
        then leads the query and the others are checked on its rows. SQLite's own choice, without statistics,
        led with a date range of 100,000 rows over a folder of 2,400 (430 ms for 1M images, not 10)."""
        template, args = given
        sql = f"SELECT COUNT(*) FROM (SELECT 1 FROM images WHERE {template.format(p='')} LIMIT {ESTIMATE_CAP})"
        return int(self.db.execute(sql, args).fetchone()[0])

    def text_search(self, dataset: str, text: str, limit: int) -> list[tuple[int, float]]:
        """(id, score) of the dataset's images whose names or captions hold every word of `text` (as a prefix,
        case and accents ignored), best first; the score is -bm25, so higher is better. No words: []."""
        expression = match_expression(text)
        if not expression or limit <= 0:
            return []
        try:
            rows = self.db.execute("SELECT t.rowid, bm25(image_text) FROM image_text t JOIN images i ON i.id = t.rowid "
                                   "WHERE image_text MATCH ? AND i.dataset = ? ORDER BY bm25(image_text), t.rowid "
                                   "LIMIT ?", (expression, dataset, limit)).fetchall()
        except sqlite3.OperationalError as err:
            if "no such table" not in str(err):
                raise
            raise IndexMismatchError(f"{OLD_CATALOG} ({err})") from None
        return [(int(image_id), -float(score)) for image_id, score in rows]

    def image_text_state(self, dataset: str) -> dict[int, tuple[str, str]]:
        """(caption, sidecar_stamp) of each row of the dataset's text, for a build to tell what changed."""
        rows = self.db.execute("SELECT rowid, caption, sidecar_stamp FROM image_text WHERE dataset = ?", (dataset,))
        return {int(i): (caption, stamp) for i, caption, stamp in rows}

    def _image_text_rows(self, ids: Iterable[int], columns: str) -> Iterator[tuple[Any, ...]]:
        """(rowid, *columns) of the text rows of these images; none from a catalog older than image_text."""
        ids = [int(i) for i in ids]
        for start in range(0, len(ids), 500):  # SQLite's bound on the parameters of one statement
            chunk = ids[start:start + 500]
            try:
                rows = self.db.execute(f"SELECT rowid, {columns} FROM image_text WHERE rowid IN "
                                       f"({', '.join('?' * len(chunk))})", chunk).fetchall()
            except sqlite3.OperationalError as err:
                if "no such table" not in str(err):
                    raise
                return
            yield from rows

    def captions_of(self, ids: Iterable[int]) -> dict[int, str]:
        """The caption of each of these images that has one (captions_from)."""
        return captions_from(self._image_text_rows(ids, "caption, sidecar"))

    def texts_of(self, ids: Iterable[int]) -> dict[int, ImageText]:
        """The text rows of these images (those that have one)."""
        return {int(row[0]): ImageText(int(row[0]), *row[1:])
                for row in self._image_text_rows(ids, "name, folders, caption, sidecar, sidecar_stamp")}

    def put_image_text(self, db: sqlite3.Connection, dataset: str, texts: Iterable[ImageText]) -> None:
        """Within a transaction: the text rows of these images, written anew."""
        texts = list(texts)
        self.drop_image_text(db, [t.id for t in texts])
        db.executemany("INSERT INTO image_text (rowid, name, folders, caption, sidecar, dataset, sidecar_stamp) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)",
                       [(t.id, t.name, t.folders, t.caption, t.sidecar, dataset, t.sidecar_stamp) for t in texts])

    def drop_image_text(self, db: sqlite3.Connection, ids: Iterable[int]) -> None:
        db.executemany("DELETE FROM image_text WHERE rowid = ?", [(i,) for i in ids])

    def set_capture_facts(self, db: sqlite3.Connection, facts: Mapping[int, CaptureFacts]) -> None:
        """Within a transaction: the capture facts of rows indexed before the catalog had them."""
        db.executemany("UPDATE images SET captured_ns = ?, captured_from = ?, camera = ?, orientation = ? WHERE id = ?",
                       [(f.captured_ns, f.captured_from, f.camera, f.orientation, i) for i, f in facts.items()])
        self._changed(db)
