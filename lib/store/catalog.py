"""The catalog: a SQLite database that maps every indexed vector id back to its image.

It also records, per dataset, the model and index type it was built with and, per partition,
the SHA-256 of the index files that match the rows, which is how readers detect a partition whose
files and rows disagree (a build that stopped between the two writes). A dataset searched through
IVF has one row in `ivf`: its shared quantizer file and the parameters tuned for it. `generation` counts
the commits that change what a server loads (partitions, IVF layers, datasets), in their own transactions,
so that any process, whenever it opened the file, can tell whether its loaded index set is still current.
"""
from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import astuple, fields
from pathlib import Path
from typing import Any

from lib.store.catalog_schema import SCHEMA, add_columns, reserved_ids, set_reserved_ids, widen_unique
from lib.store.catalog_search import INDEXES, TEXT_SCHEMA, CatalogSearch, fill_folders
from lib.store.catalog_words import WORDS_SCHEMA, CatalogWords
from lib.store.dataset_figures import read_figures
from lib.store.identity import ModelIdentity
from lib.store.names import from_sql, to_sql
from lib.store.records import DatasetRecord, ImageRecord, IvfRecord, PartitionRecord, SkippedFile

__all__ = ["CATALOG_NAME", "Catalog", "DatasetRecord", "ImageRecord", "IvfRecord", "PartitionRecord", "SkippedFile"]

CATALOG_NAME = "catalog.sqlite"

NAME_COLUMNS = ("path", "link_target", "folder")  # file names: TEXT, or a BLOB of the bytes of one that is not UTF-8


def image_record(row: sqlite3.Row) -> ImageRecord:
    """A row of `images` with its names decoded (lib/store/names.py); in a read-only catalog (the server's) too
    old to have a column, that field keeps its default."""
    values: dict[str, Any] = {k: from_sql(v) if k in NAME_COLUMNS else v for k, v in dict(row).items()}
    return ImageRecord(**values)


class Catalog(CatalogSearch, CatalogWords):
    """One SQLite file; every change goes through `transaction()` so readers see all of it or none (the queries
    of search filters and text matches are CatalogSearch's, those of words read in pictures CatalogWords's)."""

    def __init__(self, path: Path, readonly: bool = False) -> None:
        self.path = path
        if readonly:
            self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.executescript(SCHEMA + TEXT_SCHEMA + WORDS_SCHEMA)
            self._migrate()
            self.db.executescript(INDEXES)
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.row_factory = sqlite3.Row

    def _migrate(self) -> None:
        add_columns(self.db, lambda column: fill_folders(self.db) if column == "folder" else None)
        widen_unique(self.db)

    @classmethod
    def in_folder(cls, indexes_dir: Path, readonly: bool = False) -> Catalog:
        """The catalog of an index folder (indexes/catalog.sqlite)."""
        return cls(indexes_dir / CATALOG_NAME, readonly)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self.db:
            yield self.db

    def dataset(self, name: str) -> DatasetRecord | None:
        row = self.db.execute("SELECT * FROM datasets WHERE name = ?", (name,)).fetchone()
        if row is None:
            return None
        return DatasetRecord(row["name"], Path(from_sql(row["root"])) if row["root"] else None, row["layout"],
                             row["index_type"], ModelIdentity.from_dict(json.loads(row["model"])),
                             bool(row["regions"]) if "regions" in row.keys() else False)

    def datasets(self) -> list[DatasetRecord]:
        names = [r["name"] for r in self.db.execute("SELECT name FROM datasets ORDER BY name")]
        return [record for record in map(self.dataset, names) if record is not None]

    def put_dataset(self, db: sqlite3.Connection, record: DatasetRecord) -> None:
        # An upsert, not INSERT OR REPLACE: a replace deletes the row first, and the cascade its images.
        db.execute("INSERT INTO datasets (name, root, layout, index_type, model, regions) VALUES (?, ?, ?, ?, ?, ?) "
                   "ON CONFLICT (name) DO UPDATE SET root = excluded.root, layout = excluded.layout, "
                   "index_type = excluded.index_type, model = excluded.model, regions = excluded.regions",
                   (record.name, to_sql(str(record.root or "")), record.layout, record.index_type,
                    json.dumps(record.model.to_dict()), int(record.regions)))
        self._changed(db)

    def drop_dataset(self, name: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM datasets WHERE name = ?", (name,))
            db.execute("DELETE FROM image_text WHERE dataset = ?", (name,))
            db.execute("DELETE FROM image_words_text WHERE dataset = ?", (name,))
            self._changed(db)

    def partitions(self, dataset: str) -> list[PartitionRecord]:
        rows = self.db.execute("SELECT * FROM partitions WHERE dataset = ? ORDER BY name", (dataset,))
        return [PartitionRecord(**dict(row)) for row in rows]

    def images(self, dataset: str, partition: str | None = None) -> list[ImageRecord]:
        """The rows of a dataset (or of one of its partitions), in id order."""
        if partition is None:
            rows = self.db.execute("SELECT * FROM images WHERE dataset = ? ORDER BY id", (dataset,))
        else:
            rows = self.db.execute("SELECT * FROM images WHERE dataset = ? AND partition = ? ORDER BY id",
                                   (dataset, partition))
        return [image_record(row) for row in rows]

    def ivf(self, dataset: str) -> IvfRecord | None:
        """The dataset's IVF layer, or None when it is searched exactly (or the catalog predates IVF)."""
        try:
            row = self.db.execute("SELECT * FROM ivf WHERE dataset = ?", (dataset,)).fetchone()
        except sqlite3.OperationalError:  # a read-only catalog written before the table existed
            return None
        return IvfRecord(**dict(row)) if row else None

    def put_ivf(self, db: sqlite3.Connection, record: IvfRecord) -> None:
        marks = ",".join("?" * len(fields(IvfRecord)))
        db.execute(f"INSERT OR REPLACE INTO ivf VALUES ({marks})", astuple(record))
        self._changed(db)

    def drop_ivf(self, db: sqlite3.Connection, dataset: str) -> None:
        """Within a transaction: the dataset goes back to exact search; its partitions lose their IVF files."""
        db.execute("DELETE FROM ivf WHERE dataset = ?", (dataset,))
        db.execute("UPDATE partitions SET ivf_file = '', ivf_sha256 = '' WHERE dataset = ?", (dataset,))
        self._changed(db)

    def same_content(self, dataset: str, videos: bool = False) -> list[list[int]]:
        """The ids of byte-identical images (one SHA-256), one list per content held more than once; rows
        imported from embeddings have no hash ('') and are never the same content by it. Scenes of videos count
        only with `videos` (then scene n of one copy of a video is the same as scene n of another)."""
        rows = self.db.execute("SELECT group_concat(id) FROM images WHERE dataset = ? AND sha256 != '' AND scene >= -1 "
                               "AND scene < ? GROUP BY sha256, scene HAVING COUNT(*) > 1 ORDER BY MIN(id)",
                               (dataset, 2**62 if videos else 0))
        return [sorted(int(i) for i in ids.split(",")) for ids, in rows]

    def picture_rows(self, dataset: str, path: str) -> list[int]:
        """The ids of a picture's rows: the picture and its regions (none of a video's scenes)."""
        rows = self.db.execute("SELECT id FROM images WHERE dataset = ? AND path = ? AND scene < 0",
                               (dataset, to_sql(path)))
        return [int(row[0]) for row in rows]

    def class_names(self, dataset: str) -> dict[str, str]:
        """The class name of each partition of a dataset (the partitions of flat datasets have none)."""
        rows = self.db.execute("SELECT partition, MIN(class_name) FROM images WHERE dataset = ? GROUP BY partition",
                               (dataset,))
        return {partition: name for partition, name in rows}

    def generation(self) -> int:
        """How many commits have changed what a server loads: durable, the same through every connection."""
        try:
            row = self.db.execute("SELECT value FROM generation WHERE id = 1").fetchone()
        except sqlite3.OperationalError:  # a read-only catalog written before the table existed
            return 0
        return row[0] if row else 0

    def _changed(self, db: sqlite3.Connection) -> None:
        """Within the transaction of a change that a server loads: one more generation."""
        db.execute("INSERT INTO generation VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET value = value + 1")

    def image(self, image_id: int) -> ImageRecord | None:
        return self.images_by_id([image_id]).get(image_id)

    def images_by_id(self, ids: Iterable[int]) -> dict[int, ImageRecord]:
        ids = list(ids)
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self.db.execute(f"SELECT * FROM images WHERE id IN ({marks})", ids)
        return {row["id"]: image_record(row) for row in rows}

    def figures(self, dataset: str) -> dict[str, dict[str, Any]]:
        """The figures recorded beside the catalog for a dataset (lib/store/dataset_figures.py)."""
        return read_figures(self.path.parent, dataset)

    def skipped(self, dataset: str) -> dict[str, SkippedFile]:
        rows = self.db.execute("SELECT path, bytes, mtime_ns, reason FROM skipped WHERE dataset = ?", (dataset,))
        skips = [SkippedFile(**{**dict(row), "path": from_sql(row["path"])}) for row in rows]
        return {skip.path: skip for skip in skips}

    def next_ids(self, db: sqlite3.Connection, count: int) -> list[int]:
        """Reserve `count` new ids; ids are never reused, so a changed image gets a new vector id. (sqlite_sequence
        has no unique name, so catalogs of earlier versions, which inserted a row per reservation, may hold several
        for `images`: the largest counts, and one row is left.)"""
        start = reserved_ids(db) + 1
        if count:
            set_reserved_ids(db, start + count - 1)
        return list(range(start, start + count))

    def apply_partition(self, db: sqlite3.Connection, partition: PartitionRecord, removed: Iterable[int],
                        added: Iterable[ImageRecord]) -> None:
        """Within a transaction: the rows of one partition change and its index files are recorded.

        A path added here that another partition still lists (an image that moved) leaves that partition's
        rows now; the vector stays in the other partition's file until it is rewritten, and finds no row.
        """
        added = list(added)
        removed = list(removed)
        db.executemany("DELETE FROM images WHERE id = ?", [(i,) for i in removed])
        self.drop_image_text(db, removed)
        self.drop_words(db, removed)
        db.executemany("DELETE FROM images WHERE dataset = ? AND path = ?",
                       [(r.dataset, to_sql(r.path)) for r in added])
        names = [f.name for f in fields(ImageRecord)]
        db.executemany(f"INSERT INTO images ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                       [tuple(to_sql(v) if k in NAME_COLUMNS else v for k, v in zip(names, astuple(r), strict=True))
                        for r in added])
        if partition.count:
            db.execute("INSERT OR REPLACE INTO partitions (dataset, name, index_file, index_sha256, count, ivf_file, "
                       "ivf_sha256) VALUES (?, ?, ?, ?, ?, ?, ?)", astuple(partition))
        else:
            db.execute("DELETE FROM partitions WHERE dataset = ? AND name = ?", (partition.dataset, partition.name))
        self._changed(db)

    def set_perceptual_hashes(self, db: sqlite3.Connection, hashes: Mapping[int, bytes]) -> None:
        """Within a transaction: the signatures of rows indexed before the catalog had them."""
        db.executemany("UPDATE images SET perceptual_hash = ? WHERE id = ?", [(h, i) for i, h in hashes.items()])
        self._changed(db)
    def set_skipped(self, db: sqlite3.Connection, dataset: str, skipped: Mapping[str, SkippedFile]) -> None:
        db.execute("DELETE FROM skipped WHERE dataset = ?", (dataset,))
        db.executemany("INSERT INTO skipped VALUES (?, ?, ?, ?, ?)",
                       [(dataset, to_sql(s.path), s.bytes, s.mtime_ns, s.reason) for s in skipped.values()])
