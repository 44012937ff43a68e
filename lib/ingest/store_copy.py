"""A dataset's vectors copied from its index folder into the store database, a partition at a time.

    python -m lib.ingest.store_copy NAME --store postgresql://... [--workspace W]

A build with `store` set to a PostgreSQL URL does this itself once its partitions are committed, so the
server can search the database. Each partition whose version there (its exact file's SHA-256) is not the
catalog's is written in one transaction; partitions the catalog no longer has are dropped; so a copy killed
at any point keeps what it finished, and running it again does only what is left. One writer per dataset
(an advisory lock). The HNSW index is built once the rows are in (faster than growing the graph row by
row), then `hnsw.ef_search` is tuned, as nprobe is for IVF: the smallest that reaches `target_recall`
(recall@10 against the database's own exact search, on the dataset's own vectors).
"""
from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass

import numpy as np
import psycopg

from lib.cli import new_parser, run
from lib.errors import ClipSearchError, NotFoundError
from lib.settings import Settings, add_settings_arguments, settings_from_args
from lib.store.catalog import Catalog
from lib.store.dataset_index import open_dataset
from lib.store.exact_set import ExactSet
from lib.store.postgres import connect, database_error, is_database, vectors_table, writer_lock
from lib.store.postgres_pool import StorePool
from lib.store.postgres_vectors import (
    EF_SEARCH_MOST,
    PostgresVectors,
    drop_partition,
    ensure_hnsw,
    put_partition,
    record_tuning,
    versions,
)

log = logging.getLogger(__name__)

HNSW_M, HNSW_EF_CONSTRUCTION = 16, 64  # pgvector's defaults; bench/postgres_store.py measures them
EF_SEARCH_STEPS = (10, 20, 40, 80, 160, 320, 640, EF_SEARCH_MOST)
TUNING_QUERIES, K = 100, 10


@dataclass
class CopyReport:
    copied: int = 0  # partitions written
    dropped: int = 0
    rows: int = 0
    ef_search: int | None = None
    recall: float | None = None
    seconds: float = 0.0
    hnsw_s: float = 0.0  # of the seconds, building the HNSW index
    tune_s: float = 0.0  # and tuning ef_search

    def line(self, dataset: str) -> str:
        tuned = "" if self.ef_search is None else f"; hnsw.ef_search {self.ef_search} (recall@10 {self.recall:.3f})"
        return (f"store: dataset {dataset!r}: {self.copied} partition(s) ({self.rows} vectors) copied, "
                f"{self.dropped} dropped in {self.seconds:.1f} s{tuned}")


def copy_dataset(settings: Settings, dataset: str) -> CopyReport:
    """Bring the database's copy of a dataset's vectors up to date with its index folder (module docstring)."""
    if not is_database(settings.store):
        raise ClipSearchError(f"store is {settings.store!r}: give a postgresql:// URL to copy a dataset into")
    started, report = time.perf_counter(), CopyReport()
    catalog = Catalog.in_folder(settings.indexes_dir, readonly=True)
    try:
        record = catalog.dataset(dataset)
        if record is None:
            raise NotFoundError(f"unknown dataset {dataset!r} in {settings.indexes_dir}")
        index = open_dataset(catalog, settings.indexes_dir, dataset, record.model.dim)
        recorded = {partition.name for partition in catalog.partitions(dataset)}
    finally:
        catalog.close()
    for left in index.left_out:
        log.warning("not copied: %s (%s)", left.what, left.why)
    connection = connect(settings.store, autocommit=True)
    try:
        with writer_lock(connection, dataset):
            table = vectors_table(connection, dataset, record.model.dim, record.model)
            held = versions(connection, dataset)
            for name, partition in index.partitions.items():
                if held.get(name) != partition.index_sha256:
                    ids, vectors = _partition_rows(index.exact, name)
                    put_partition(connection, table, dataset, name, partition.index_sha256, ids, vectors)
                    report.copied, report.rows = report.copied + 1, report.rows + len(ids)
            for name in held.keys() - recorded:  # a damaged file's partition keeps its copy, checked by version
                drop_partition(connection, table, dataset, name)
                report.dropped += 1
            started_hnsw = time.perf_counter()
            built = ensure_hnsw(connection, table, dataset, HNSW_M, HNSW_EF_CONSTRUCTION)
            report.hnsw_s = time.perf_counter() - started_hnsw
            if built or report.copied or report.dropped:
                report.ef_search, report.recall = tune_ef_search(settings, table.as_string(connection).strip('"'),
                                                                 record.model.dim, versions(connection, dataset))
                record_tuning(connection, dataset, report.ef_search, report.recall)
                report.tune_s = time.perf_counter() - started_hnsw - report.hnsw_s
    except psycopg.Error as err:
        raise database_error(err, settings.store) from None
    finally:
        connection.close()
    report.seconds = time.perf_counter() - started
    return report


def check_store(settings: Settings) -> None:
    """Fail before a build's work, in one line, when its store database cannot be used."""
    if is_database(settings.store):
        connect(settings.store).close()


def publish(settings: Settings, dataset: str) -> list[str]:
    """After a build's commits: the dataset copied into the store database, as a line of its report."""
    return [copy_dataset(settings, dataset).line(dataset)] if is_database(settings.store) else []


def _partition_rows(exact: ExactSet, name: str) -> tuple[np.ndarray, np.ndarray]:
    blocks = list(exact.blocks([name]))
    if not blocks:
        return np.zeros(0, np.int64), np.zeros((0, exact.dim), np.float32)
    return np.concatenate([b[0] for b in blocks]), np.concatenate([b[1] for b in blocks])


def tune_ef_search(settings: Settings, table: str, dim: int, partitions: dict[str, str]) -> tuple[int, float]:
    """The smallest hnsw.ef_search of EF_SEARCH_STEPS whose recall@10 reaches target_recall, and that recall."""
    pool = StorePool(settings.store, size=1)
    try:
        probe = PostgresVectors(pool, table, dict.fromkeys(partitions, 0), dim, EF_SEARCH_STEPS[0])
        queries = probe.vectors(probe.sample_ids(TUNING_QUERIES))
        if len(queries) <= K:
            return EF_SEARCH_STEPS[0], 1.0
        truth = probe.search(queries, K, exact=True)[1]
        recall = 0.0
        for ef_search in EF_SEARCH_STEPS:
            probe.ef_search = ef_search
            found = probe.search(queries, K)[1]
            recall = float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)]))
            if recall >= settings.target_recall:
                return ef_search, recall
        return EF_SEARCH_STEPS[-1], recall
    finally:
        pool.close()


def make_parser() -> argparse.ArgumentParser:
    parser = new_parser(__doc__)
    parser.add_argument("dataset_name", metavar="NAME", help="the dataset to copy")
    add_settings_arguments(parser, ["workspace", "store", "target_recall"])
    return parser


def copy(args: argparse.Namespace) -> None:
    print(copy_dataset(settings_from_args(args), args.dataset_name).line(args.dataset_name))


def main(argv: list[str] | None = None) -> None:
    run("store_copy", make_parser(), copy, argv)


if __name__ == "__main__":
    main()
