"""A dataset's index files opened for search: every partition's exact file, and its IVF layer when it has one.

The server loads its index set through this, and the builder tunes nprobe through it, so both read the
same files the same way. A partition whose IVF lists are missing or stale is searched exactly (and
merged by score) rather than dropped: a build killed half-way never hides images from search.

Damage is contained: a partition whose exact file is missing, unreadable or not the recorded one (SHA-256)
is left out alone, its IVF lists with it, and the rest of the dataset is searched; a damaged quantizer
leaves the dataset searched exactly. Each file left out is named in `left_out`, with why, for the server
to report (the next build re-encodes such partitions).
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import faiss
import numpy as np

from lib.errors import IndexFileError
from lib.store.catalog import Catalog, IvfRecord, PartitionRecord
from lib.store.exact_set import ExactSet
from lib.store.files import settle
from lib.store.id_order import merge
from lib.store.index_files import ids_of, read_index, settle_partition, verify
from lib.store.ivf_files import TrainedIVF
from lib.store.ivf_set import IvfSet

SUBSET_SCAN = 200_000  # a filter admitting at most this many images is searched by reading their vectors


class LeftOutFile(NamedTuple):
    """A file of a dataset that is not used, and what that leaves out."""

    what: str  # "partition <dataset>/<name>", "IVF lists of partition ...", "IVF quantizer of dataset ..."
    file: Path | None  # None: no file is damaged (the store database lacks the partition at its version)
    why: str


@dataclass
class DatasetIndex:
    """The exact files of the intact partitions; the IVF over those that have lists; the names of the others;
    the files left out."""

    partitions: dict[str, PartitionRecord]
    exact: ExactSet
    ivf: IvfSet | None = None
    exact_only: list[str] = field(default_factory=list)  # partitions without usable IVF lists
    left_out: list[LeftOutFile] = field(default_factory=list)

    def count(self, chosen: Sequence[str] | None = None) -> int:
        return self.exact.count(chosen)

    def search(self, vectors: np.ndarray, depth: int, chosen: Sequence[str] | None = None,
               exact: bool = False, among: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """lib/store/vector_index.VectorIndex.search over the files.

        The first n results of a search of depth d > n are the results of a search of depth n (for d up
        to ivf_set.RERANK_FLOOR on re-ranked codes; lib/serve/ranking.py pages deeper). A filter that admits
        at most SUBSET_SCAN images is searched exactly by reading their vectors; a larger one through
        faiss's id selector, inside the search, so a filtered page is as full.
        """
        names = list(dict.fromkeys(chosen)) if chosen and set(chosen) != set(self.partitions) else None
        selector, share = None, 1.0
        if among is not None:
            among = self.held(among, names)
            if len(among) <= SUBSET_SCAN:
                return self.exact.search_among(vectors, depth, among)
            selector, share = faiss.IDSelectorBatch(among), len(among) / max(self.exact.count(names), 1)
        if exact or self.ivf is None:
            return self.exact.search(vectors, depth, names, selector)
        covered = None if names is None else [n for n in names if n in self.ivf.names]
        rest = self.exact_only if names is None else [n for n in names if n not in self.ivf.names]
        results = [self.ivf.search(vectors, depth, covered, selector, share)] if covered is None or covered else []
        if rest:
            results.append(self.exact.search(vectors, depth, rest, selector))
        return merge(results, depth)

    def held(self, ids: np.ndarray, chosen: Sequence[str] | None = None) -> np.ndarray:
        stores, _ = self.exact.locate(ids)
        numbers = list(self.exact.stores)
        wanted = np.array([numbers.index(n) for n in chosen if n in numbers] if chosen is not None
                          else range(len(numbers)), np.int64)
        return np.asarray(ids, np.int64)[np.isin(stores, wanted)]

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        return self.exact.vectors(ids)

    def ids_of(self, partition: str) -> np.ndarray:
        return ids_of(self.exact.stores[partition])

    def blocks(self, names: Sequence[str] | None = None, rows: int = 65_536) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return self.exact.blocks(names, rows)


def read_trained(folder: Path, record: IvfRecord) -> TrainedIVF:
    path = folder / record.quantizer_file
    settle(path, record.quantizer_sha256)
    return TrainedIVF.read(verify(path, record.quantizer_sha256))


def _ivf_shards(folder: Path, trained: TrainedIVF, partitions: list[PartitionRecord],
                left_out: list[LeftOutFile]) -> dict[str, faiss.IndexIVF]:
    shards = {}
    for partition in partitions:
        if not partition.ivf_file:
            continue
        path = folder / partition.ivf_file
        try:
            shards[partition.name] = trained.open(verify(path, partition.ivf_sha256))
        except (IndexFileError, OSError) as err:
            left_out.append(LeftOutFile(f"IVF lists of partition {partition.dataset}/{partition.name}", path,
                                        f"{err}; the partition is searched exactly until then"))
    return shards


def _open_exact(folder: Path, partitions: list[PartitionRecord], left_out: list[LeftOutFile]
                ) -> dict[str, faiss.Index]:
    """The exact files that are intact, by partition name; the others go to `left_out`."""
    stores = {}
    for partition in partitions:
        path = folder / partition.index_file
        try:
            settle_partition(folder, partition)
            stores[partition.name] = read_index(path, partition.index_sha256, mmap=True)
        except (IndexFileError, OSError) as err:
            left_out.append(LeftOutFile(f"partition {partition.dataset}/{partition.name}", path,
                                        f"{err}; its {partition.count} images are left out of search until then"))
    return stores


def open_dataset(catalog: Catalog, folder: Path, dataset: str, dim: int) -> DatasetIndex:
    """Open (memory-mapped) and check every index file of a dataset against the catalog; leave out the
    partitions whose files fail (see the module's docstring)."""
    left_out: list[LeftOutFile] = []
    recorded = catalog.partitions(dataset)
    stores = _open_exact(folder, recorded, left_out)
    partitions = [p for p in recorded if p.name in stores]
    opened = DatasetIndex({p.name: p for p in partitions}, ExactSet(stores, dim), left_out=left_out)
    record = catalog.ivf(dataset)
    if record is None:
        return opened
    try:
        trained = read_trained(folder, record)
    except (IndexFileError, OSError) as err:
        left_out.append(LeftOutFile(f"IVF quantizer of dataset {dataset}", folder / record.quantizer_file,
                                    f"{err}; the dataset is searched exactly until then"))
        return opened
    shards = _ivf_shards(folder, trained, partitions, left_out)
    opened.exact_only = [p.name for p in partitions if p.name not in shards]
    if shards:
        opened.ivf = IvfSet(trained, shards, opened.exact, record)
    return opened
