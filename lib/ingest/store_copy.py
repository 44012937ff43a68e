"""A dataset's vectors copied from its index folder into the store database, a partition at a time.

    python -m lib.ingest.store_copy NAME --store postgresql://... [--workspace W]
    python -m lib.ingest.store_copy NAME --store postgresql://... --to-files    (lib/ingest/store_restore.py)

A build with `store` set to a PostgreSQL URL does this itself once its partitions are committed, so the server
can search the database. Each partition whose version there (its exact file's SHA-256) is not the catalog's is
written in one transaction with its rows; partitions the catalog no longer has are dropped; so a copy killed at
any point keeps what it finished, and running it again does only what is left. The dataset's record and its
figures go along. One writer per dataset (an advisory lock). The HNSW index is built once the rows are in
(faster than growing the graph row by row), then `hnsw.ef_search` is tuned, as nprobe is for IVF: the smallest
that reaches `target_recall` (recall@10 against the database's own exact search, on the dataset's own vectors).
"""
from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass

import psycopg

from lib.cli import new_parser, run
from lib.errors import ClipSearchError, IndexFileError, NotFoundError, StoreError
from lib.ingest.hnsw_tune import tune_ef_search
from lib.ingest.store_restore import restore_dataset
from lib.settings import Settings, add_settings_arguments, settings_from_args
from lib.store.catalog import Catalog, DatasetRecord
from lib.store.dataset_figures import read_figures
from lib.store.dataset_index import DatasetIndex, open_dataset
from lib.store.identity import ModelIdentity
from lib.store.index_files import read_index, vectors_of
from lib.store.postgres import (
    connect,
    database_error,
    dataset_row,
    drop_dataset,
    is_database,
    record_dataset,
    record_figures,
    vectors_table,
    writer_lock,
)
from lib.store.postgres_rows import PartitionRows, catalog_rows
from lib.store.postgres_vectors import (
    digests,
    drop_partition,
    ensure_hnsw,
    put_partition,
    put_partition_rows,
    record_tuning,
    versions,
)

log = logging.getLogger(__name__)



@dataclass
class CopyReport:
    copied: int = 0  # partitions written
    rows_written: int = 0  # partitions whose rows alone were written again (a caption, capture facts)
    dropped: int = 0
    rows: int = 0
    ef_search: int | None = None
    recall: float | None = None
    seconds: float = 0.0
    hnsw_s: float = 0.0  # of the seconds, building the HNSW index
    tune_s: float = 0.0  # and tuning ef_search
    short: bool = False  # the largest ef_search still falls short of target_recall

    def line(self, dataset: str) -> str:
        tuned = "" if self.ef_search is None else f"; hnsw.ef_search {self.ef_search} (recall@10 {self.recall:.3f})"
        if self.short:
            tuned += (", short of target_recall even so: raise hnsw_m or hnsw_ef_construction (the next build "
                      "builds the index again with them)")
        rows = f", rows of {self.rows_written} more written again" if self.rows_written else ""
        return (f"store: dataset {dataset!r}: {self.copied} partition(s) ({self.rows} vectors) copied{rows}, "
                f"{self.dropped} dropped in {self.seconds:.1f} s{tuned}")


class StoreWriter:
    """The store database's side of one build: one connection holding the dataset's writer lock for the whole
    build; each partition copied as soon as the files commit it, so a server shows it as it would from the
    files; at the end (`finish`) every partition still behind, the drops, the HNSW index and its tuning.

    A database that goes away mid-build does not stop the build: the files go on, the copy falls behind
    (logged once), and `finish` catches up, or fails in one line if the database is still away.
    """

    def __init__(self, settings: Settings, dataset: str, rebuild: bool = False,
                 model: ModelIdentity | None = None) -> None:
        """`model`: the build's, checked against the database's copy before any work (IndexMismatchError)."""
        if not is_database(settings.store):
            raise ClipSearchError(f"store is {settings.store!r}: give a postgresql:// URL to copy a dataset into")
        self.settings, self.dataset, self.report = settings, dataset, CopyReport()
        self._started, self._behind = time.perf_counter(), False
        self._held = ExitStack()
        self._vectors: str | None = None  # the dataset's table, made or checked once per connection
        self.connection = self._connect()
        try:
            if rebuild:
                self._write(lambda: drop_dataset(self.connection, dataset))
            row = dataset_row(self.connection, dataset)
            if model is not None and row is not None:
                ModelIdentity.from_dict(row["model"]).check_same(model, f"dataset {dataset!r} in the store database")
        except BaseException:
            self.close()
            raise

    def _connect(self) -> psycopg.Connection:
        self._held.close()
        connection = self._held.enter_context(connect(self.settings.store, autocommit=True))
        self._held.enter_context(writer_lock(connection, self.dataset))
        self._vectors = None  # a database back from away may be another (restored, emptied)
        return connection

    def _write(self, step: Callable[[], object]) -> None:
        try:
            if self.connection.broken or self.connection.closed:
                self.connection = self._connect()
            step()
        except psycopg.Error as err:
            raise database_error(err, self.settings.store) from None

    def _table(self, record: DatasetRecord, reads_words: bool | None) -> str:
        if self._vectors is None:  # not at every partition: it runs the DDL of the tables and their indexes
            self._vectors = vectors_table(self.connection, self.dataset, record.model.dim, record.model)
        record_dataset(self.connection, record, reads_words, read_figures(self.settings.indexes_dir, self.dataset))
        return self._vectors

    def committed(self, partition: str) -> None:
        """The files committed this partition: copy it now with its rows (unless the copy has fallen behind)."""
        if self._behind:
            return
        catalog = Catalog.in_folder(self.settings.indexes_dir, readonly=True)
        try:
            record, reads = catalog.dataset(self.dataset), catalog.reads_words(self.dataset)
            written = {p.name: p for p in catalog.partitions(self.dataset)}.get(partition)
            rows = catalog_rows(catalog, self.dataset, partition).get(partition, PartitionRows())
        finally:
            catalog.close()
        if record is None or written is None:
            return
        try:
            index = read_index(self.settings.indexes_dir / written.index_file, written.index_sha256, mmap=True)
            ids, vectors = vectors_of(index)
            self._write(lambda: put_partition(self.connection, self._table(record, reads), self.dataset, partition,
                                              written.index_sha256, ids, vectors, rows))
        except (StoreError, IndexFileError, OSError) as err:
            log.warning("the store database's copy of %r falls behind; the build goes on (%s)", self.dataset, err)
            self._behind = True
            return
        self.report.copied, self.report.rows = self.report.copied + 1, self.report.rows + len(ids)

    def _catalog(self) -> tuple[DatasetRecord, bool | None, dict[str, PartitionRows]]:
        """The dataset's record, whether it reads words, and each partition's rows, from its catalog."""
        catalog = Catalog.in_folder(self.settings.indexes_dir, readonly=True)
        try:
            record = catalog.dataset(self.dataset)
            if record is None:
                raise NotFoundError(f"unknown dataset {self.dataset!r} in {self.settings.indexes_dir}")
            return record, catalog.reads_words(self.dataset), catalog_rows(catalog, self.dataset)
        finally:
            catalog.close()

    def finish(self) -> CopyReport:
        """Copy what is still behind, drop what the catalog no longer has, build the HNSW index, tune."""
        record, reads, rows = self._catalog()
        catalog = Catalog.in_folder(self.settings.indexes_dir, readonly=True)
        try:
            index = open_dataset(catalog, self.settings.indexes_dir, self.dataset, record.model.dim)
            recorded = {partition.name for partition in catalog.partitions(self.dataset)}
        finally:
            catalog.close()
        for left in index.left_out:
            log.warning("not copied: %s (%s)", left.what, left.why)
        self._write(lambda: self._catch_up(self._table(record, reads), record.model, index, recorded, rows))
        self.report.seconds = time.perf_counter() - self._started
        return self.report

    def rows_changed(self) -> int:
        """After the build's last change to rows (the words read once the vectors were copied): each partition
        whose rows the database holds otherwise, written again (its vectors stay). Returns how many."""
        record, reads, rows = self._catalog()
        written = 0

        def write() -> None:
            nonlocal written
            table, held = self._table(record, reads), digests(self.connection, self.dataset)
            for name in held.keys() & rows.keys():
                if held[name] != rows[name].digest():
                    put_partition_rows(self.connection, table, self.dataset, name, rows[name])
                    written += 1
        self._write(write)
        return written

    def _catch_up(self, table: str, model: ModelIdentity, index: DatasetIndex, recorded: set[str],
                  rows: dict[str, PartitionRows]) -> None:
        report = self.report
        held, digested = versions(self.connection, self.dataset), digests(self.connection, self.dataset)
        for name, partition in index.partitions.items():
            mine = rows.get(name, PartitionRows())
            if held.get(name) != partition.index_sha256:
                ids, vectors = vectors_of(index.exact.stores[name])
                put_partition(self.connection, table, self.dataset, name, partition.index_sha256, ids, vectors, mine)
                report.copied, report.rows = report.copied + 1, report.rows + len(ids)
            elif digested.get(name) != mine.digest():
                put_partition_rows(self.connection, table, self.dataset, name, mine)
                report.rows_written += 1
        for name in held.keys() - recorded:  # a damaged file's partition keeps its copy, checked by version
            drop_partition(self.connection, table, self.dataset, name)
            report.dropped += 1
        started = time.perf_counter()
        built = ensure_hnsw(self.connection, table, self.dataset, self.settings.hnsw_m,
                            self.settings.hnsw_ef_construction)
        report.hnsw_s = time.perf_counter() - started
        if built or report.copied or report.dropped:
            report.ef_search, report.recall = tune_ef_search(self.settings, table, model.dim,
                                                             versions(self.connection, self.dataset))
            record_tuning(self.connection, self.dataset, report.ef_search, report.recall)
            report.short = report.recall < self.settings.target_recall
            report.tune_s = time.perf_counter() - started - report.hnsw_s

    def close(self) -> None:
        self._held.close()


def copy_dataset(settings: Settings, dataset: str) -> CopyReport:
    """Bring the database's copy of a dataset's vectors up to date with its index folder (module docstring)."""
    writer = StoreWriter(settings, dataset)
    try:
        return writer.finish()
    finally:
        writer.close()


def store_writer(settings: Settings, dataset: str, rebuild: bool, model: ModelIdentity) -> StoreWriter | None:
    """A build's StoreWriter when `store` is a database (a rebuild drops the database's copy first), else None."""
    return StoreWriter(settings, dataset, rebuild, model) if is_database(settings.store) else None


def copy_figures(settings: Settings, dataset: str) -> None:
    """The figures beside the dataset's catalog into its row in the store database (calibration writes them once
    the build has copied the dataset); a database that cannot take them gets them at the next copy. Nothing
    without a store database."""
    if not is_database(settings.store):
        return
    try:
        with connect(settings.store, autocommit=True) as connection:
            try:
                record_figures(connection, dataset, read_figures(settings.indexes_dir, dataset))
            except psycopg.Error as err:
                raise database_error(err, settings.store) from None
    except StoreError as err:
        log.warning("the store database gets the figures of %r at the next copy: %s", dataset, err)


def check_store(settings: Settings) -> None:
    """Fail before a build's work, in one line, when its store database cannot be used."""
    if is_database(settings.store):
        connect(settings.store).close()


def make_parser() -> argparse.ArgumentParser:
    parser = new_parser(__doc__)
    parser.add_argument("dataset_name", metavar="NAME", help="the dataset to copy")
    parser.add_argument("--to-files", action="store_true",
                        help="the other way: from the store database into the index folder")
    add_settings_arguments(parser, ["workspace", "store", "target_recall", "hnsw_m", "hnsw_ef_construction"])
    return parser


def copy(args: argparse.Namespace) -> None:
    settings = settings_from_args(args)
    if args.to_files:
        print(restore_dataset(settings, args.dataset_name).line(args.dataset_name, settings.indexes_dir))
    else:
        print(copy_dataset(settings, args.dataset_name).line(args.dataset_name))


def main(argv: list[str] | None = None) -> None:
    run("store_copy", make_parser(), copy, argv)


if __name__ == "__main__":
    main()
