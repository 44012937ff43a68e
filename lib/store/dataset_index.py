"""A dataset's index files opened for search: every partition's exact file, and its IVF layer when it has one.

The server loads its index set through this, and the builder tunes nprobe through it, so both read the
same files the same way. A partition whose IVF lists are missing or stale is searched exactly (and
merged by score) rather than dropped: a build killed half-way never hides images from search.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import faiss

from lib.errors import IndexFileError
from lib.store.catalog import Catalog, IvfRecord, PartitionRecord
from lib.store.exact_set import ExactSet
from lib.store.files import settle
from lib.store.index_files import read_index, settle_partition, verify
from lib.store.ivf_files import TrainedIVF
from lib.store.ivf_set import IvfSet

log = logging.getLogger(__name__)


@dataclass
class DatasetIndex:
    """The exact files of all partitions; the IVF over those that have lists; the names of the others."""

    partitions: dict[str, PartitionRecord]
    exact: ExactSet
    ivf: IvfSet | None = None
    exact_only: list[str] = field(default_factory=list)  # partitions without usable IVF lists


def read_trained(folder: Path, record: IvfRecord) -> TrainedIVF:
    path = folder / record.quantizer_file
    settle(path, record.quantizer_sha256)
    return TrainedIVF.read(verify(path, record.quantizer_sha256))


def _ivf_shards(folder: Path, trained: TrainedIVF, partitions: list[PartitionRecord]) -> dict[str, faiss.IndexIVF]:
    shards = {}
    for partition in partitions:
        if not partition.ivf_file:
            continue
        try:
            shards[partition.name] = trained.open(verify(folder / partition.ivf_file, partition.ivf_sha256))
        except IndexFileError as err:
            log.warning("%s; partition %r is searched exactly until then", err, partition.name)
    return shards


def open_dataset(catalog: Catalog, folder: Path, dataset: str, dim: int) -> DatasetIndex:
    """Open (memory-mapped) and check every index file of a dataset against the catalog."""
    partitions = catalog.partitions(dataset)
    stores = {}
    for partition in partitions:
        settle_partition(folder, partition)
        stores[partition.name] = read_index(folder / partition.index_file, partition.index_sha256, mmap=True)
    opened = DatasetIndex({p.name: p for p in partitions}, ExactSet(stores, dim))
    record = catalog.ivf(dataset)
    if record is None:
        return opened
    try:
        trained = read_trained(folder, record)
    except IndexFileError as err:
        log.warning("%s; dataset %r is searched exactly until then", err, dataset)
        return opened
    shards = _ivf_shards(folder, trained, partitions)
    opened.exact_only = [p.name for p in partitions if p.name not in shards]
    if shards:
        opened.ivf = IvfSet(trained, shards, opened.exact, record)
    return opened
