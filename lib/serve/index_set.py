"""The index set the server searches: every image dataset and vocabulary built with the model in use.

An IndexSet is immutable. LiveIndexSet notices when a builder has finished (the catalog's data
version or a vocabulary file changed), loads a new IndexSet beside the old one and swaps the
reference; requests in flight keep the set they started with. Index files are memory-mapped, so
the workers of one server share them through the page cache.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Sequence

import faiss
import numpy as np

from lib.errors import ClipSearchError, IndexFileError, NotFoundError
from lib.store.catalog import CATALOG_NAME, Catalog, DatasetRecord, PartitionRecord
from lib.store.identity import ModelIdentity
from lib.store.index_files import ids_of, open_partition
from lib.store.vocab_index import TextIndex, load_text_index

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedPartition:
    record: PartitionRecord
    class_name: str
    index: faiss.Index


def shards_of(indexes: Sequence[faiss.Index], dim: int) -> faiss.Index:
    """One index over several partitions: faiss searches them in turn and merges the top-k in C++.

    Cheaper than a Python loop over the partitions (one call instead of one per partition); the
    partitions keep their own catalog ids (successive_ids=False).
    """
    shards = faiss.IndexShards(dim, False, False)
    shards.metric_type = faiss.METRIC_INNER_PRODUCT
    for index in indexes:
        shards.add_shard(index)
    return shards


class IdOrder:
    """Image ids in a fixed order, and the way back from an id to its place (made once per loaded dataset)."""

    def __init__(self, ids: np.ndarray) -> None:
        self.ids = ids
        self._by_id = np.argsort(ids)
        self._sorted = ids[self._by_id]

    def __len__(self) -> int:
        return len(self.ids)

    def places(self, ids: Sequence[int]) -> list[int | None]:
        """The place of each id (None for an id the dataset does not hold)."""
        found = np.searchsorted(self._sorted, ids)
        return [int(self._by_id[f]) if f < len(self._sorted) and self._sorted[f] == i else None
                for f, i in zip(found, ids)]


@dataclass(frozen=True)
class LoadedDataset:
    record: DatasetRecord
    partitions: dict[str, LoadedPartition]
    all_partitions: faiss.Index  # shards_of every partition, built once at load time

    @property
    def count(self) -> int:
        return sum(p.record.count for p in self.partitions.values())

    @cached_property
    def order(self) -> "IdOrder":
        """Every image's place in the dataset: partitions in name order, each in its index's order."""
        return IdOrder(np.concatenate([ids_of(p.index) for p in self.partitions.values()] or [np.zeros(0, np.int64)]))

    def searchable(self, chosen: Sequence[str] | None = None) -> faiss.Index:
        """The index to search for the chosen partitions (all when none are chosen)."""
        if not chosen or set(chosen) == set(self.partitions):
            return self.all_partitions
        return shards_of([self.partitions[name].index for name in dict.fromkeys(chosen)], self.record.model.dim)


@dataclass(frozen=True)
class IndexSet:
    """Datasets and vocabularies loaded at one moment, plus what was left out and why."""

    model: ModelIdentity
    datasets: dict[str, LoadedDataset] = field(default_factory=dict)
    vocabularies: dict[str, TextIndex] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)


def _load_dataset(catalog: Catalog, folder: Path, record: DatasetRecord) -> LoadedDataset:
    names = catalog.class_names(record.name)
    partitions = {}
    for partition in catalog.partitions(record.name):
        partitions[partition.name] = LoadedPartition(partition, names.get(partition.name, ""),
                                                     open_partition(folder, partition))
    return LoadedDataset(record, partitions, shards_of([p.index for p in partitions.values()], record.model.dim))


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
        return _load_dataset(catalog, indexes_dir, record)
    finally:
        catalog.close()


def load_index_set(indexes_dir: Path, indexes_text_dir: Path, model: ModelIdentity) -> IndexSet:
    """Load what matches `model`; datasets or vocabularies built with another model are left out, with why."""
    index_set = IndexSet(model)
    if (indexes_dir / CATALOG_NAME).is_file():
        catalog = Catalog.in_folder(indexes_dir, readonly=True)
        try:
            for record in catalog.datasets():
                try:
                    model.check_same(record.model, f"dataset {record.name!r}")
                    index_set.datasets[record.name] = _load_dataset(catalog, indexes_dir, record)
                except ClipSearchError as err:
                    index_set.left_out[f"dataset {record.name}"] = str(err)
        finally:
            catalog.close()
    for meta in sorted(indexes_text_dir.glob("text_*.json")) if indexes_text_dir.is_dir() else []:
        try:
            vocabulary = load_text_index(meta.with_suffix(".index"))
            model.check_same(vocabulary.model, f"vocabulary {vocabulary.name!r}")
            index_set.vocabularies[vocabulary.name] = vocabulary
        except (ClipSearchError, KeyError) as err:
            index_set.left_out[f"vocabulary {meta.stem}"] = str(err)
    for what, why in index_set.left_out.items():
        log.warning("left out %s: %s", what, why)
    return index_set


class LiveIndexSet:
    """The current IndexSet, swapped for a new one when the files on disk change."""

    def __init__(self, indexes_dir: Path, indexes_text_dir: Path, model: ModelIdentity,
                 check_every: float = 1.0) -> None:
        self.indexes_dir, self.indexes_text_dir, self.model = indexes_dir, indexes_text_dir, model
        self.check_every = check_every
        self._lock = threading.Lock()
        self._checked_at = 0.0
        self._pid = os.getpid()
        self._version_catalog: Catalog | None = None
        self._fingerprint = self._read_fingerprint()
        self._current = load_index_set(indexes_dir, indexes_text_dir, model)

    def _data_version(self) -> int | None:
        """The catalog's data version, read through one long-lived connection (it counts others' commits)."""
        if not (self.indexes_dir / CATALOG_NAME).is_file():
            return None
        if self._version_catalog is None or self._pid != os.getpid():  # connections do not survive a fork
            self._version_catalog = Catalog.in_folder(self.indexes_dir, readonly=True)
            self._pid = os.getpid()
        return self._version_catalog.data_version()

    def _read_fingerprint(self) -> tuple:
        catalog = self.indexes_dir / CATALOG_NAME
        stamp = catalog.stat().st_ino if catalog.is_file() else None
        texts = tuple(sorted((p.name, p.stat().st_mtime_ns) for p in self.indexes_text_dir.glob("text_*.json"))) \
            if self.indexes_text_dir.is_dir() else ()
        return stamp, self._data_version(), texts

    def current(self) -> IndexSet:
        """The set to use for one request; at most every `check_every` seconds, look for a newer one."""
        if time.monotonic() - self._checked_at >= self.check_every and self._lock.acquire(blocking=False):
            try:
                self._checked_at = time.monotonic()
                self._maybe_reload()
            finally:
                self._lock.release()
        return self._current

    def _maybe_reload(self) -> None:
        fingerprint = self._read_fingerprint()
        if fingerprint == self._fingerprint:
            return
        try:
            fresh = load_index_set(self.indexes_dir, self.indexes_text_dir, self.model)
        except (IndexFileError, sqlite3.Error, OSError) as err:
            log.warning("kept the loaded indexes; the new ones are not ready yet (%s)", err)
            return
        self._current, self._fingerprint = fresh, fingerprint
        log.info("loaded a new index set: %d dataset(s), %d vocabularies", len(fresh.datasets),
                 len(fresh.vocabularies))
