"""The index set the server searches: every image dataset and vocabulary built with the model in use.

An IndexSet is immutable. LiveIndexSet notices when a builder has finished (the catalog's data
version or a vocabulary file changed), loads a new IndexSet beside the old one and swaps the
reference; requests in flight keep the set they started with. Index files are memory-mapped, so
the workers of one server share them through the page cache (and the check of each file against its
recorded SHA-256 is done once per process, not at every swap).
"""
from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import faiss
import numpy as np

from lib.errors import ClipSearchError, IndexFileError, NotFoundError
from lib.store.catalog import CATALOG_NAME, Catalog, DatasetRecord, IvfRecord, PartitionRecord
from lib.store.catalog_copy import repair_catalog
from lib.store.dataset_index import DatasetIndex, open_dataset
from lib.store.identity import ModelIdentity
from lib.store.index_files import ids_of
from lib.store.vocab_index import TextIndex, load_text_index

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedPartition:
    record: PartitionRecord
    class_name: str
    index: faiss.Index  # the partition's exact file: its vectors with their catalog ids


def merge(results: Sequence[tuple[np.ndarray, np.ndarray]], depth: int) -> tuple[np.ndarray, np.ndarray]:
    """The best `depth` of several (scores, ids) results of the same queries."""
    if len(results) == 1:
        return results[0]
    scores, ids = np.hstack([r[0] for r in results]), np.hstack([r[1] for r in results])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :depth]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)


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
                for f, i in zip(found, ids, strict=True)]


@dataclass(frozen=True)
class LoadedDataset:
    record: DatasetRecord
    partitions: dict[str, LoadedPartition]
    index: DatasetIndex

    @property
    def count(self) -> int:
        return sum(p.record.count for p in self.partitions.values())

    @property
    def ivf(self) -> IvfRecord | None:
        """The tuned IVF parameters the dataset is searched with (None: exact search)."""
        return self.index.ivf.params if self.index.ivf else None

    def search(self, vectors: np.ndarray, depth: int, chosen: Sequence[str] | None = None,
               exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Top-`depth` (scores, ids) over the chosen partitions (all when none are chosen).

        Deeper searches are cheap and consistent: the first n results of a search of depth d > n are the
        results of a search of depth n (for d up to ivf_set.RERANK_FLOOR on re-ranked codes), so pages of
        results continue exactly. `exact` scans every stored vector instead of probing IVF lists.
        """
        names = list(dict.fromkeys(chosen)) if chosen and set(chosen) != set(self.partitions) else None
        ivf = self.index.ivf
        if exact or ivf is None:
            return self.index.exact.search(vectors, depth, names)
        covered = None if names is None else [n for n in names if n in ivf.names]
        rest = self.index.exact_only if names is None else [n for n in names if n not in ivf.names]
        results = [ivf.search(vectors, depth, covered)] if covered is None or covered else []
        if rest:
            results.append(self.index.exact.search(vectors, depth, rest))
        return merge(results, depth)

    def vector(self, image_id: int) -> np.ndarray:
        """The stored vector of an indexed image, as a (1, dim) array."""
        return self.index.exact.vectors(np.array([image_id]))

    @cached_property
    def order(self) -> IdOrder:
        """Every image's place in the dataset: partitions in name order, each in its index's order."""
        return IdOrder(np.concatenate([ids_of(p.index) for p in self.partitions.values()] or [np.zeros(0, np.int64)]))


@dataclass(frozen=True)
class IndexSet:
    """Datasets and vocabularies loaded at one moment, plus what was left out and why."""

    model: ModelIdentity
    datasets: dict[str, LoadedDataset] = field(default_factory=dict)
    vocabularies: dict[str, TextIndex] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)


def _load_dataset(catalog: Catalog, folder: Path, record: DatasetRecord) -> LoadedDataset:
    names = catalog.class_names(record.name)
    index = open_dataset(catalog, folder, record.name, record.model.dim)
    partitions = {name: LoadedPartition(partition, names.get(name, ""), index.exact.stores[name])
                  for name, partition in index.partitions.items()}
    return LoadedDataset(record, partitions, index)


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
        self.repaired = repair_catalog(indexes_dir, rebuild=False)  # a damaged catalog: its good copy, or a refusal
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
