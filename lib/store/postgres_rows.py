"""What the store database holds of each image besides its vector: its catalog row, its text, its words.

Beside a dataset's table of vectors (`clipsearch_vectors_<n>`) its table of images (`clipsearch_images_<n>`)
has one row per image: `id`, `partition`, then the columns of the image's catalog row (ImageRecord's fields
but the dataset, which the table is), the words it is found by in text search (`text_` and ImageText's
fields) and what OCR read in it (`words_boxes` as JSON, NULL while unread, and `words_problem`). The columns
are made from those dataclasses, so a field added there is a column here. File names (`path`, `link_target`,
`folder`) are `bytea` of the name's bytes (`os.fsencode`), as any file system spells them: PostgreSQL text
cannot hold a name that is not UTF-8. Two tables, not one: rows change without their vectors (a caption,
the words OCR read after the vectors were copied, the capture facts of an old row), and a changed row of the
vectors' table is a new tuple that the HNSW graph takes in again, a vector at a time.

A partition's rows have a digest (`PartitionRows.digest`), kept beside its version: a build compares it with
the catalog's and writes the partition's rows again when they changed.
"""
from __future__ import annotations

import hashlib
import logging
import os
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import astuple, dataclass, field, fields
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from lib.store.catalog import NAME_COLUMNS, Catalog
from lib.store.catalog_search import QUERY_WORD
from lib.store.catalog_words import boxes_from_data
from lib.store.names import fold
from lib.store.records import ImageRecord, ImageText, ImageWords

log = logging.getLogger(__name__)

_TYPES = {"int": "int8", "str": "text", "float": "float8", "builtins.bytes": "bytea"}
RECORD_FIELDS = [f for f in fields(ImageRecord) if f.name not in ("id", "dataset", "partition")]
TEXT_FIELDS = [f for f in fields(ImageText) if f.name != "id"]
# (column, PostgreSQL type) after id and partition: those the rows are read back from, then those searched
ROW_COLUMNS = ([(f.name, "bytea" if f.name in NAME_COLUMNS else _TYPES[str(f.type)]) for f in RECORD_FIELDS]
               + [(f"text_{f.name}", "text") for f in TEXT_FIELDS]
               + [("words_boxes", "jsonb"), ("words_problem", "text")])
COLUMNS = ROW_COLUMNS + [("search_text", "text"), ("search_words", "text")]
TSVECTOR = "to_tsvector('simple', search_text)"  # the expression its index is on, which queries must repeat
ROWS_FORMAT = b"rows 2"  # in every digest: rows written before the search columns are written again


def search_text(text: ImageText | None) -> str | None:
    """An image's text as `search_text` holds it: folded, and only the words a query can match, space-separated
    (PostgreSQL's parser would otherwise read 'IMG_0042.jpg' as one file name, not three words)."""
    if text is None:
        return None
    return " ".join(QUERY_WORD.findall(fold(" ".join((text.name, text.folders, text.caption, text.sidecar)))))


def search_words(words: ImageWords | None) -> str | None:
    return fold(words.text) if words is not None and words.boxes else None


@dataclass
class PartitionRows:
    """A partition's catalog rows, text rows and words, by image id."""

    records: dict[int, ImageRecord] = field(default_factory=dict)
    texts: dict[int, ImageText] = field(default_factory=dict)
    words: dict[int, ImageWords] = field(default_factory=dict)

    def digest(self) -> str:
        """A SHA-256 of every row, the same from the catalog and from the database when they agree."""
        sha = hashlib.sha256(ROWS_FORMAT)
        for rows in (self.records, self.texts, self.words):
            for image_id in sorted(rows):
                sha.update(repr(rows[image_id]).encode("utf-8", "surrogateescape"))
            sha.update(b"\x00")
        return sha.hexdigest()

    def values(self, record: ImageRecord) -> tuple[Any, ...]:
        """The COPY values of COLUMNS for one image (NULL for a text or words row it has not)."""
        text, words = self.texts.get(record.id), self.words.get(record.id)
        return (tuple(os.fsencode(getattr(record, f.name)) if f.name in NAME_COLUMNS else getattr(record, f.name)
                      for f in RECORD_FIELDS)
                + (astuple(text)[1:] if text else (None,) * len(TEXT_FIELDS))
                + ((Jsonb([box.as_json() for box in words.boxes]), words.problem) if words else (None, None))
                + (search_text(text), search_words(words)))


def images_table(vectors_table: str) -> str:
    """The name of the table of images beside a table of vectors."""
    return vectors_table.replace("clipsearch_vectors_", "clipsearch_images_", 1)


# name -> what it indexes: the partition, a picture's rows by path (/similar leaves them out: 20 ms a request
# at 100k without it), each filter's column, the text's words, the words read (trigrams)
ROW_INDEXES = {"partition": "(partition)", "path": "(path)", "captured": "(captured_ns)", "folder": "(folder)",
               "width": "(width)", "height": "(height)", "text": f"USING gin (({TSVECTOR}))",
               "words": "USING gin (search_words gin_trgm_ops)"}


def create_images_table(connection: psycopg.Connection, table: str) -> None:
    """Within a transaction: the images table and its indexes, or the columns and indexes an older one lacks."""
    connection.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (id bigint PRIMARY KEY, partition text NOT NULL, {})")
                       .format(sql.Identifier(table), sql.SQL(", ").join(
                           sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(k)) for c, k in COLUMNS)))
    add_missing_columns(connection, table, COLUMNS)
    trigrams = connection.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'").fetchone() is not None
    for name, indexed in ROW_INDEXES.items():
        if name == "words" and not trigrams:
            log.warning("the store database has no pg_trgm: words read in pictures are searched without an index")
            continue
        connection.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} " + indexed).format(
            sql.Identifier(f"{table}_{name}"), sql.Identifier(table)))


def add_missing_columns(connection: psycopg.Connection, table: str, columns: list[tuple[str, str]]) -> None:
    """ALTER TABLE for each (column, type) the table lacks (an ALTER, even IF NOT EXISTS, locks the table whole)."""
    have = {row[0] for row in connection.execute("SELECT column_name FROM information_schema.columns "
                                                 "WHERE table_name = %s", (table,)).fetchall()}
    for column, kind in columns:
        if column not in have:
            connection.execute(sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
                sql.Identifier(table), sql.Identifier(column), sql.SQL(kind)))


def catalog_rows(catalog: Catalog, dataset: str, partition: str | None = None) -> dict[str, PartitionRows]:
    """Each partition's rows as the catalog holds them (or one partition's), in one read."""
    found: dict[str, PartitionRows] = defaultdict(PartitionRows)
    records = catalog.images(dataset, partition)
    ids = [record.id for record in records]
    texts, words = catalog.texts_of(ids), catalog.words_of(ids)
    for record in records:
        rows = found[record.partition]
        rows.records[record.id] = record
        if record.id in texts:
            rows.texts[record.id] = texts[record.id]
        if record.id in words:
            rows.words[record.id] = words[record.id]
    return dict(found)


def put_rows(connection: psycopg.Connection, table: str, partition: str, rows: PartitionRows) -> None:
    """Within a transaction: a partition's rows in the images table replaced by these."""
    connection.execute(sql.SQL("DELETE FROM {} WHERE partition = %s").format(sql.Identifier(table)), (partition,))
    names = sql.SQL(", ").join(sql.Identifier(c) for c in ["id", "partition", *(c for c, _ in COLUMNS)])
    with connection.cursor().copy(sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT BINARY)").format(
            sql.Identifier(table), names)) as copy:
        copy.set_types(["int8", "text", *(kind for _, kind in COLUMNS)])
        for record in rows.records.values():
            copy.write_row((record.id, partition, *rows.values(record)))


def read_rows(connection: psycopg.Connection, table: str, dataset: str, partition: str) -> PartitionRows:
    """One partition's rows as the images table holds them."""
    rows = PartitionRows()
    for record, text, words in select_rows(connection, table, dataset, sql.SQL("partition = %s"), (partition,)):
        rows.records[record.id] = record
        if text is not None:
            rows.texts[record.id] = text
        if words is not None:
            rows.words[record.id] = words
    return rows


def select_rows(connection: psycopg.Connection, table: str, dataset: str, where: sql.Composable,
                args: tuple[Any, ...]) -> Iterator[tuple[ImageRecord, ImageText | None, ImageWords | None]]:
    """The rows of the images table that `where` picks, in id order: each image's catalog row, text and words."""
    names = sql.SQL(", ").join(sql.Identifier(c) for c in ["id", "partition", *(c for c, _ in ROW_COLUMNS)])
    for image_id, partition, *values in connection.execute(sql.SQL("SELECT {} FROM {} WHERE {} ORDER BY id").format(
            names, sql.Identifier(table), where), args).fetchall():
        record = values[:len(RECORD_FIELDS)]
        text = values[len(RECORD_FIELDS):len(RECORD_FIELDS) + len(TEXT_FIELDS)]
        boxes, problem = values[-2:]
        named: dict[str, Any] = {f.name: os.fsdecode(v) if f.name in NAME_COLUMNS else v
                                 for f, v in zip(RECORD_FIELDS, record, strict=True)}
        yield (ImageRecord(image_id, dataset, partition, **named),
               None if text[0] is None else ImageText(image_id, *text),
               None if boxes is None else ImageWords(image_id, boxes_from_data(boxes), problem))
