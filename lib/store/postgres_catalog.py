"""The catalog read from the store database: what a server asks of its catalog, answered from the rows that
builds copy beside the vectors (lib/store/postgres_rows.py), for a server whose index folder has no catalog.

So a server can run on another machine than the builder with only the database's URL (a read replica, a
managed PostgreSQL), and its answers are the files store's:
- filters are SQL on the images table's columns (one B-tree index each; PostgreSQL's planner picks the one
  that leads from its statistics, which SQLite, without them, could not);
- text search matches every query word as a prefix of a word of `search_text` (folded as the FTS5 table's
  words are) through a GIN index on its tsvector, ranked by ts_rank; SQLite ranks by bm25, so matches are
  the same set and the order of equal matches may differ;
- words read in pictures match every folded substring with LIKE, which pg_trgm's trigram index answers,
  ranked shortest text first (bm25's preference for short texts, without needing pg_trgm's functions).

A partition is served at the version the database holds (no catalog to compare it with); a dataset copied
by a version that kept only vectors (no catalog record) is not offered.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from lib.store.catalog_search import MAX_QUERY_WORDS, QUERY_WORD, captions_from
from lib.store.catalog_words import sorted_ids, substrings
from lib.store.names import fold
from lib.store.postgres import dataset_row, stored_record
from lib.store.postgres_pool import StorePool
from lib.store.postgres_rows import TSVECTOR, images_table, select_rows
from lib.store.records import DatasetRecord, ImageRecord, ImageText, ImageWords, PartitionRecord

Row = tuple[ImageRecord, ImageText | None, ImageWords | None]


class PostgresCatalog:
    """The read side of the catalog (lib/store/catalog_reader.py) over a server's pool; safe to share between
    threads, since every call takes a connection of its own."""

    def __init__(self, pool: StorePool) -> None:
        self.pool = pool

    def close(self) -> None:
        """Nothing to close: the connections are the pool's."""

    def _tables(self, connection: psycopg.Connection, dataset: str | None = None) -> dict[str, str]:
        """dataset -> its images table, of every dataset with a catalog record (or of one)."""
        where = "" if dataset is None else " AND name = %s"
        rows = connection.execute(f"SELECT name, vectors_table FROM clipsearch_datasets WHERE layout IS NOT NULL"
                                  f"{where}", () if dataset is None else (dataset,)).fetchall()
        return {name: images_table(table) for name, table in rows}

    def _query(self, dataset: str, query: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """The rows of one statement on the dataset's images table (named {t} in it); none for an unknown dataset."""
        with self.pool.connection() as connection:
            table = self._tables(connection, dataset).get(dataset)
            if table is None:
                return []
            return connection.execute(sql.SQL(query).format(t=sql.Identifier(table)), args).fetchall()

    def _rows_of(self, ids: Iterable[int]) -> list[Row]:
        """The catalog rows, texts and words of these ids, whichever datasets hold them."""
        ids = sorted({int(i) for i in ids})
        if not ids:
            return []
        found: list[Row] = []
        with self.pool.connection() as connection:
            for dataset, table in self._tables(connection).items():
                found += select_rows(connection, table, dataset, sql.SQL("id = ANY(%s)"), (ids,))
        return found

    def dataset(self, name: str) -> DatasetRecord | None:
        with self.pool.connection() as connection:
            row = dataset_row(connection, name)
        return None if row is None or row["layout"] is None else stored_record(row)

    def datasets(self) -> list[DatasetRecord]:
        with self.pool.connection() as connection:
            names = sorted(self._tables(connection))
            return [stored_record(row) for row in (dataset_row(connection, n) for n in names) if row is not None]

    def partitions(self, dataset: str) -> list[PartitionRecord]:
        with self.pool.connection() as connection:
            rows = connection.execute("SELECT name, version, count FROM clipsearch_partitions WHERE dataset = %s "
                                      "ORDER BY name", (dataset,)).fetchall()
        return [PartitionRecord(dataset, name, "", version, count) for name, version, count in rows]

    def generation(self) -> int:
        """Always 0: the datasets' own generations in the database tell a server when to reload."""
        return 0

    def images(self, dataset: str, partition: str | None = None) -> list[ImageRecord]:
        with self.pool.connection() as connection:
            table = self._tables(connection, dataset).get(dataset)
            if table is None:
                return []
            where = sql.SQL("TRUE") if partition is None else sql.SQL("partition = %s")
            rows = select_rows(connection, table, dataset, where, () if partition is None else (partition,))
            return [record for record, _, _ in rows]

    def images_by_id(self, ids: Iterable[int]) -> dict[int, ImageRecord]:
        return {record.id: record for record, _, _ in self._rows_of(ids)}

    def image(self, image_id: int) -> ImageRecord | None:
        return self.images_by_id([image_id]).get(image_id)

    def texts_of(self, ids: Iterable[int]) -> dict[int, ImageText]:
        return {record.id: text for record, text, _ in self._rows_of(ids) if text is not None}

    def captions_of(self, ids: Iterable[int]) -> dict[int, str]:
        """The caption of each of these images that has one (catalog_search.captions_from)."""
        return captions_from((i, text.caption, text.sidecar) for i, text in self.texts_of(ids).items())

    def words_of(self, ids: Iterable[int]) -> dict[int, ImageWords]:
        return {record.id: words for record, _, words in self._rows_of(ids) if words is not None}

    def class_names(self, dataset: str) -> dict[str, str]:
        return dict(self._query(dataset, "SELECT partition, MIN(class_name) FROM {t} GROUP BY partition"))

    def picture_rows(self, dataset: str, path: str) -> list[int]:
        """The ids of a picture's rows: the picture and its regions (none of a video's scenes)."""
        rows = self._query(dataset, "SELECT id FROM {t} WHERE path = %s AND scene < 0 ORDER BY id",
                           (os.fsencode(path),))
        return [int(row[0]) for row in rows]

    def same_content(self, dataset: str, videos: bool = False) -> list[list[int]]:
        """The ids of byte-identical images, as Catalog.same_content groups them."""
        rows = self._query(dataset, "SELECT array_agg(id ORDER BY id) FROM {t} WHERE sha256 != '' AND scene >= -1 "
                           "AND scene < %s GROUP BY sha256, scene HAVING COUNT(*) > 1 ORDER BY MIN(id)",
                           (2**62 if videos else 0,))
        return [[int(i) for i in ids] for ids, in rows]

    def filtered_ids(self, dataset: str, *, date_from_ns: int | None = None, date_to_ns: int | None = None,
                     folder: str | None = None, min_width: int | None = None,
                     min_height: int | None = None) -> np.ndarray:
        """The sorted ids that pass every filter given, as Catalog.filtered_ids reads them. Names are bytes here,
        so one range finds a folder's rows whatever their encoding."""
        terms: list[str] = ["TRUE"]
        args: list[Any] = []
        if date_from_ns is not None or date_to_ns is not None:
            terms.append("captured_ns >= %s AND captured_ns <= %s AND captured_from != ''")
            args += [-(2**63) if date_from_ns is None else date_from_ns,
                     2**63 - 1 if date_to_ns is None else date_to_ns]
        if folder is not None and folder.strip("/"):
            raw = os.fsencode(folder.strip("/"))
            terms.append("(folder = %s OR (folder >= %s AND folder < %s))")  # '0' is the byte after '/'
            args += [raw, raw + b"/", raw + b"0"]
        for column, least in (("width", min_width), ("height", min_height)):
            if least is not None:
                terms.append(f"{column} >= %s")
                args.append(least)
        rows = self._query(dataset, "SELECT id FROM {t} WHERE " + " AND ".join(terms) + " ORDER BY id", tuple(args))
        return np.array([row[0] for row in rows], dtype=np.int64)

    def text_search(self, dataset: str, text: str, limit: int) -> list[tuple[int, float]]:
        """(id, score) of the images whose text holds every word of `text` as a prefix, best first; [] for none."""
        words = list(dict.fromkeys(QUERY_WORD.findall(fold(text))))[:MAX_QUERY_WORDS]
        if not words or limit <= 0:
            return []
        query = " & ".join(f"{word}:*" for word in words)  # letters and digits only: no tsquery syntax
        rows = self._query(dataset, f"SELECT id, ts_rank({TSVECTOR}, q) AS score FROM {{t}}, "
                           f"to_tsquery('simple', %s) q WHERE {TSVECTOR} @@ q ORDER BY score DESC, id LIMIT %s",
                           (query, limit))
        return [(int(i), float(score)) for i, score in rows]

    def words_search(self, dataset: str, text: str, limit: int | None) -> list[tuple[int, float]]:
        """(id, score) of the images whose read text holds every folded substring of `text`, best first."""
        found = substrings(text)
        if not found or (limit is not None and limit <= 0):
            return []
        patterns = tuple("%" + s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%" for s in found)
        rows = self._query(dataset, "SELECT id, 1.0 / (1 + length(search_words)) AS score FROM {t} WHERE "
                           + " AND ".join(["search_words LIKE %s"] * len(patterns))
                           + " ORDER BY score DESC, id LIMIT %s", (*patterns, limit))
        return [(int(i), float(score)) for i, score in rows]

    def words_matching_ids(self, dataset: str, text: str) -> np.ndarray:
        return sorted_ids(self.words_search(dataset, text, None))

    def words_counts(self, dataset: str) -> dict[str, int]:
        rows = self._query(dataset, "SELECT COUNT(words_boxes), COUNT(*) FILTER (WHERE jsonb_array_length("
                           "words_boxes) > 0), COUNT(*) FILTER (WHERE words_problem != '') FROM {t}")
        read, worded, failed = rows[0] if rows else (0, 0, 0)
        return {"read": int(read), "with_words": int(worded), "failed": int(failed)}

    def reads_words(self, dataset: str) -> bool | None:
        with self.pool.connection() as connection:
            row = dataset_row(connection, dataset)
        return None if row is None or row["reads_words"] is None else bool(row["reads_words"])

    def figures(self, dataset: str) -> dict[str, dict[str, Any]]:
        """The figures the last copy took along (lib/store/dataset_figures.py); none before one did."""
        with self.pool.connection() as connection:
            row = dataset_row(connection, dataset)
        return dict(row["figures"] or {}) if row is not None else {}
