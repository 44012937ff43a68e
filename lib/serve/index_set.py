"""The index set the server searches: every image dataset and vocabulary built with the model in use.

An IndexSet is immutable. LiveIndexSet notices when a builder has finished, loads a new IndexSet beside
the old one and swaps the reference; requests in flight keep the set they started with. "Finished" is
read from durable state, the same in every process whenever it started: the catalog's generation (a
counter each commit bumps in its own transaction), the catalog file's identity (a replaced file counts),
the vocabulary files' stamps and, with a store database, its datasets' generations (an index folder without a
catalog, with a store database, is served from the database's rows: lib/store/postgres_catalog.py). So a
gunicorn worker forked from a master that loaded its set long ago loads the current one (`refresh`, before it
serves). Index files are memory-mapped, so the workers of one server share them through the page cache (and
the check of each file against its recorded SHA-256 is done once per process, not at every swap).

A damaged file leaves out only what it holds (lib/store/dataset_index.py): the set names each left-out
file in `left_out_files`, and the log names it once per process, not at every reload.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lib.errors import ClipSearchError, IndexFileError, IndexMismatchError, NotFoundError, StoreUnavailableError
from lib.serve.loaded_dataset import LoadedDataset, LoadedPartition
from lib.store.catalog import CATALOG_NAME, Catalog, DatasetRecord
from lib.store.catalog_copy import repair_catalog
from lib.store.catalog_reader import CatalogReader
from lib.store.dataset_index import LeftOutFile, open_dataset
from lib.store.identity import ModelIdentity
from lib.store.postgres import is_database
from lib.store.postgres_catalog import PostgresCatalog
from lib.store.postgres_dataset import open_postgres, store_generations
from lib.store.postgres_pool import StorePool
from lib.store.vocab_index import TextIndex, load_text_index

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexSet:
    """Datasets and vocabularies loaded at one moment, plus what was left out and why.

    `left_out` holds everything not served (what -> why); `left_out_files` the entries of it that a damaged,
    unreadable or missing file caused (what -> the file), which make the server degraded. `catalog_file` is
    the (st_dev, st_ino) of the catalog it was loaded from (None without one).
    """

    model: ModelIdentity
    datasets: dict[str, LoadedDataset] = field(default_factory=dict)
    vocabularies: dict[str, TextIndex] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)
    left_out_files: dict[str, str] = field(default_factory=dict)
    catalog_file: tuple[int, int] | None = None
    unavailable: list[str] = field(default_factory=list)  # why the store database left datasets out, if it did

    def leave_out(self, what: str, why: str, file: Path | None = None) -> None:
        self.left_out[what] = why
        if file is not None:
            self.left_out_files[what] = str(file)

    def leave_out_unreachable(self, what: str, err: StoreUnavailableError) -> None:
        """Left out because the store database is away: also why a search of it answers 503."""
        self.leave_out(what, str(err))
        self.unavailable.append(str(err))


def _load_dataset(catalog: CatalogReader, folder: Path, record: DatasetRecord, pool: StorePool | None = None
                  ) -> LoadedDataset:
    """A dataset's vectors from its files, or from the store database when a pool is given."""
    names = catalog.class_names(record.name)
    if pool is None:
        assert isinstance(catalog, Catalog), "without a store database, the catalog is the index folder's"
        index = open_dataset(catalog, folder, record.name, record.model.dim)
        partitions = {name: LoadedPartition(p, names.get(name, "")) for name, p in index.partitions.items()}
        return LoadedDataset(record, partitions, index, index.left_out, index.ivf.params if index.ivf else None,
                             index.exact_only)
    vectors, served, left = open_postgres(pool, record, catalog.partitions(record.name))
    if vectors is None:
        raise NotFoundError(left[f"dataset {record.name}"])
    partitions = {name: LoadedPartition(p, names.get(name, "")) for name, p in served.items()}
    return LoadedDataset(record, partitions, vectors, [LeftOutFile(what, None, why) for what, why in left.items()],
                         store="postgresql", ef_search=vectors.ef_search)


def report_left_out(left_out: dict[str, str], reported: dict[str, str] | None = None) -> None:
    """Log what is left out, each entry once: those already in `reported` (what was logged before) are not
    logged again, and an entry no longer left out leaves it, so that it is logged again if it comes back."""
    reported = {} if reported is None else reported
    for what in [w for w in reported if w not in left_out]:
        del reported[what]
        log.info("%s is no longer left out", what)
    for what, why in left_out.items():
        if reported.get(what) != why:
            log.warning("left out %s: %s", what, why)
            reported[what] = why


def load_dataset(indexes_dir: Path, name: str) -> LoadedDataset:
    """One dataset of an index folder, whatever model built it (for tools that read vectors, not encode)."""
    if not (indexes_dir / CATALOG_NAME).is_file():
        raise NotFoundError(f"no index set in {indexes_dir}; build one with build_image_index.py")
    catalog = Catalog.in_folder(indexes_dir, readonly=True)
    try:
        record = catalog.dataset(name)
        if record is None:
            known = ", ".join(d.name for d in catalog.datasets()) or "none"
            raise NotFoundError(f"unknown dataset {name!r} in {indexes_dir}; known: {known}")
        dataset = _load_dataset(catalog, indexes_dir, record)
    finally:
        catalog.close()
    report_left_out({f.what: f.why for f in dataset.left_out})
    return dataset


def catalog_identity(indexes_dir: Path) -> tuple[int, int] | None:
    """(st_dev, st_ino) of the index folder's catalog: another file took its place when this changes."""
    try:
        stat = (indexes_dir / CATALOG_NAME).stat()
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


def open_catalog(indexes_dir: Path, pool: StorePool | None) -> CatalogReader:
    """The index folder's catalog, read-only, or the store database's rows when the folder has none."""
    if pool is not None and catalog_identity(indexes_dir) is None:
        return PostgresCatalog(pool)
    return Catalog.in_folder(indexes_dir, readonly=True)


def _load_datasets(index_set: IndexSet, indexes_dir: Path, pool: StorePool | None, strict: bool) -> None:
    catalog = open_catalog(indexes_dir, pool)
    try:
        try:
            records = catalog.datasets()
        except StoreUnavailableError as err:  # the catalog is the database's, and it is away
            if strict:
                raise
            index_set.leave_out_unreachable("store database", err)
            return
        for record in records:
            try:
                index_set.model.check_same(record.model, f"dataset {record.name!r}")
                loaded = index_set.datasets[record.name] = _load_dataset(catalog, indexes_dir, record, pool)
            except StoreUnavailableError as err:
                if strict:
                    raise
                index_set.leave_out_unreachable(f"dataset {record.name}", err)
                continue
            except ClipSearchError as err:
                index_set.leave_out(f"dataset {record.name}", str(err))
                continue
            for left in loaded.left_out:
                index_set.leave_out(left.what, left.why, left.file)
    finally:
        catalog.close()


def load_index_set(indexes_dir: Path, indexes_text_dir: Path, model: ModelIdentity,
                   reported: dict[str, str] | None = None, pool: StorePool | None = None,
                   strict: bool = False) -> IndexSet:
    """Load what matches `model`, its vectors from the files or, given a pool, the store database; datasets
    or vocabularies built with another model, and damaged files, are left out, with why (logged once for all
    the loads that share `reported`, see report_left_out). A store database that cannot be reached leaves its
    datasets out too, or, `strict`, raises StoreUnavailableError (a reload keeps the set it has)."""
    index_set = IndexSet(model, catalog_file=catalog_identity(indexes_dir))
    if index_set.catalog_file is not None or pool is not None:
        _load_datasets(index_set, indexes_dir, pool, strict)
    for meta in sorted(indexes_text_dir.glob("text_*.json")) if indexes_text_dir.is_dir() else []:
        try:
            vocabulary = load_text_index(meta.with_suffix(".index"))
            model.check_same(vocabulary.model, f"vocabulary {vocabulary.name!r}")
            index_set.vocabularies[vocabulary.name] = vocabulary
        except IndexMismatchError as err:
            index_set.leave_out(f"vocabulary {meta.stem}", str(err))
        except (ClipSearchError, OSError) as err:
            index_set.leave_out(f"vocabulary {meta.stem}", str(err), meta.with_suffix(".index"))
        except KeyError as err:
            index_set.leave_out(f"vocabulary {meta.stem}", f"{meta} lacks {err}; re-run build_text_index.py", meta)
    report_left_out(index_set.left_out, reported)
    return index_set


class LiveIndexSet:
    """The current IndexSet, swapped for a new one when the files on disk (or the store database) change.

    With a store database, its datasets' generations join the fingerprint; while it cannot be reached the
    loaded set is kept (its searches answer StoreUnavailableError), and a set loaded while it was away
    (its datasets left out) is replaced once it is back.
    """

    def __init__(self, indexes_dir: Path, indexes_text_dir: Path, model: ModelIdentity,
                 check_every: float = 1.0, store: str = "files", threads: int = 4) -> None:
        self.indexes_dir, self.indexes_text_dir, self.model = indexes_dir, indexes_text_dir, model
        self.check_every = check_every
        self.pool = StorePool(store, threads) if is_database(store) else None
        self.repaired = repair_catalog(indexes_dir, rebuild=False)  # a damaged catalog: its good copy, or a refusal
        self._lock = threading.Lock()
        self._checked_at = 0.0
        self._catalog: Catalog | None = None
        self._catalog_of: tuple[int, tuple[int, int]] | None = None  # (pid, file identity) of that connection
        self._reported: dict[str, str] = {}
        try:
            self._fingerprint = self._read_fingerprint()
        except StoreUnavailableError:
            self._fingerprint = ()  # never equal to one read later: the set is loaded again when it is back
        self._current = load_index_set(indexes_dir, indexes_text_dir, model, self._reported, self.pool)

    def open_catalog(self) -> CatalogReader:
        """A connection to the catalog the server reads (the caller closes it): see open_catalog."""
        return open_catalog(self.indexes_dir, self.pool)

    def figures(self, dataset: str) -> dict[str, dict[str, Any]]:
        """The figures recorded for a dataset, wherever its catalog is (lib/store/dataset_figures.py)."""
        catalog = self.open_catalog()
        try:
            return catalog.figures(dataset)
        finally:
            catalog.close()

    def _generation(self) -> tuple[tuple[int, int], int] | None:
        """The catalog's identity and generation: one stat and one small SELECT through a connection kept
        for this process and this file (a connection survives neither a fork nor the file's replacement)."""
        identity = catalog_identity(self.indexes_dir)
        if identity is None:
            return None
        if self._catalog is None or self._catalog_of != (os.getpid(), identity):
            if self._catalog is not None and self._catalog_of and self._catalog_of[0] == os.getpid():
                self._catalog.close()
            self._catalog = Catalog.in_folder(self.indexes_dir, readonly=True)
            self._catalog_of = (os.getpid(), identity)
        return identity, self._catalog.generation()

    def _read_fingerprint(self) -> tuple:
        texts = tuple(sorted((p.name, p.stat().st_mtime_ns) for p in self.indexes_text_dir.glob("text_*.json"))) \
            if self.indexes_text_dir.is_dir() else ()
        return self._generation(), texts, store_generations(self.pool) if self.pool else ()

    def current(self) -> IndexSet:
        """The set to use for one request; at most every `check_every` seconds, look for a newer one."""
        if time.monotonic() - self._checked_at >= self.check_every and self._lock.acquire(blocking=False):
            try:
                self._checked_at = time.monotonic()
                self._maybe_reload()
            finally:
                self._lock.release()
        return self._current

    def refresh(self) -> IndexSet:
        """Look for a newer set now (a worker forked from a master that loaded its set earlier: before it
        serves a request)."""
        with self._lock:
            self._checked_at = time.monotonic()
            self._maybe_reload()
        return self._current

    def _maybe_reload(self) -> None:
        try:  # read before loading: a commit during the load changes it again, so the next check reloads
            fingerprint = self._read_fingerprint()
            if fingerprint == self._fingerprint:
                return
            fresh = load_index_set(self.indexes_dir, self.indexes_text_dir, self.model, self._reported, self.pool,
                                   strict=True)
        except (IndexFileError, StoreUnavailableError, sqlite3.Error, OSError) as err:
            log.warning("kept the loaded indexes; the new ones are not ready yet (%s)", err)
            return
        self._current, self._fingerprint = fresh, fingerprint
        log.info("loaded a new index set: %d dataset(s), %d vocabularies", len(fresh.datasets),
                 len(fresh.vocabularies))
