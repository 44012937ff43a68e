"""A dataset copied back from the store database into an index folder (`python -m lib.ingest.store_copy NAME
--to-files`): for a database that outlived its folder (a new machine, a lost disk, a read replica).

Each partition's vectors and rows (catalog row, text, words: lib/store/postgres_rows.py) come back through
the one partition commit (lib/store/index_files.commit_partition), its text and words first, so a restore
killed at any point keeps whole partitions and, run again, does only what is left. Then the partition's
version in the database becomes its new file's SHA-256, so a server reads the restored folder beside the
database at once, and the next build copies nothing again.

Vectors come back as the database holds them (halfvec: float16 precision) into exact files; an IVF
dataset's lists are not rebuilt here (its next build trains them). A dataset the folder already holds is
refused unless each of its partitions holds the database's rows (a restore resumed, or a folder the
database was copied from): the folder is never overwritten with other content.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from lib.errors import IndexMismatchError, NotFoundError, StoreError
from lib.settings import Settings
from lib.store.catalog import Catalog, DatasetRecord
from lib.store.catalog_schema import reserved_ids, set_reserved_ids
from lib.store.dataset_figures import FIGURE_KINDS, figures_path, write_figures
from lib.store.files import build_lock
from lib.store.index_files import commit_partition
from lib.store.postgres import connect, database_error, dataset_row, stored_record, writer_lock
from lib.store.postgres_pool import StorePool
from lib.store.postgres_rows import PartitionRows, catalog_rows, images_table, read_rows
from lib.store.postgres_vectors import PostgresVectors, set_version, versions


@dataclass
class RestoreReport:
    restored: int = 0  # partitions written into the folder
    kept: int = 0  # partitions the folder already held at the database's version
    rows: int = 0
    seconds: float = 0.0

    def line(self, dataset: str, folder: Path) -> str:
        return (f"store: dataset {dataset!r}: {self.restored} partition(s) ({self.rows} vectors) restored into "
                f"{folder}, {self.kept} already there, in {self.seconds:.1f} s")


def restore_dataset(settings: Settings, dataset: str) -> RestoreReport:
    """Bring an index folder's copy of a dataset up to date with the store database's (module docstring)."""
    started, folder = time.perf_counter(), settings.indexes_dir
    connection = connect(settings.store, autocommit=True)
    pool = StorePool(settings.store, size=1)
    try:
        with writer_lock(connection, dataset):
            row = dataset_row(connection, dataset)
            if row is None:
                raise NotFoundError(f"the store database holds no dataset {dataset!r}")
            if row["layout"] is None:  # copied by a version that kept only the vectors
                raise StoreError(f"the store database holds only the vectors of dataset {dataset!r}, not its images' "
                                 f"rows: copy it again from its index folder (python -m lib.ingest.store_copy)")
            folder.mkdir(parents=True, exist_ok=True)
            with build_lock(folder, dataset):
                catalog = Catalog.in_folder(folder)
                try:
                    report = _restore(connection, pool, catalog, folder, stored_record(row), row)
                finally:
                    catalog.close()
    except psycopg.Error as err:
        raise database_error(err, settings.store) from None
    finally:
        pool.close()
        connection.close()
    report.seconds = time.perf_counter() - started
    return report


def _restore(connection: psycopg.Connection, pool: StorePool, catalog: Catalog, folder: Path,
             record: DatasetRecord, row: dict[str, Any]) -> RestoreReport:
    dataset, held = record.name, versions(connection, record.name)
    table = images_table(row["vectors_table"])
    mine = {p.name: p.index_sha256 for p in catalog.partitions(dataset)}
    _check_folder(connection, catalog, folder, record, table)
    with catalog.transaction() as db:
        catalog.put_dataset(db, record)
        if row["reads_words"] is not None:
            catalog.set_reads_words(db, dataset, bool(row["reads_words"]))
    for kind, figures in (row["figures"] or {}).items():  # those the folder lacks: its own may be newer
        if kind in FIGURE_KINDS and not figures_path(folder, kind, dataset).exists():
            write_figures(folder, kind, dataset, figures)
    vectors = PostgresVectors(pool, row["vectors_table"], dict.fromkeys(held, 0), record.model.dim, 40)
    report = RestoreReport()
    for name in sorted(held):
        if mine.get(name) == held[name]:
            report.kept += 1
            continue
        blocks = list(vectors.blocks([name]))
        ids = np.concatenate([b[0] for b in blocks]) if blocks else np.empty(0, np.int64)
        found = np.concatenate([b[1] for b in blocks]) if blocks else np.empty((0, record.model.dim), np.float32)
        rows = read_rows(connection, table, dataset, name)
        _put_text_and_words(catalog, dataset, rows, int(ids.max(initial=0)))
        commit_partition(catalog, folder, dataset, name, ids, found, added=rows.records.values())
        written = {p.name: p.index_sha256 for p in catalog.partitions(dataset)}.get(name)
        if written is not None:
            set_version(connection, dataset, name, written)
        report.restored, report.rows = report.restored + 1, report.rows + len(ids)
    return report


def _check_folder(connection: psycopg.Connection, catalog: Catalog, folder: Path, record: DatasetRecord,
                  table: str) -> None:
    """Refuse a folder whose copy of the dataset is not the database's (another model, other rows)."""
    existing = catalog.dataset(record.name)
    if existing is None:
        return
    if existing.model != record.model:
        raise IndexMismatchError(f"dataset {record.name!r} in {folder} was built with another model than the "
                                 f"store database's copy; remove it from the folder first")
    for name, rows in catalog_rows(catalog, record.name).items():
        if read_rows(connection, table, record.name, name).digest() != rows.digest():
            raise IndexMismatchError(f"dataset {record.name!r} in {folder} differs from the store database's "
                                     f"(partition {name!r}); build it, or remove it from the folder, first")


def _put_text_and_words(catalog: Catalog, dataset: str, rows: PartitionRows, largest_id: int) -> None:
    """Before the partition's commit: its text and words, and ids reserved up to its largest, so that a later
    build never gives a restored id to another image."""
    with catalog.transaction() as db:
        set_reserved_ids(db, max(reserved_ids(db), largest_id))
        catalog.put_image_text(db, dataset, rows.texts.values())
        catalog.put_words(db, dataset, rows.words.values())
