"""A dataset as the server holds it: its catalog record, its partitions and its vectors in either store."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from lib.serve.ranking import RankedLists
from lib.store.catalog import DatasetRecord, IvfRecord, PartitionRecord
from lib.store.dataset_index import LeftOutFile
from lib.store.id_order import IdOrder
from lib.store.vector_index import VectorIndex


@dataclass(frozen=True)
class LoadedDataset:
    """A dataset as served: its catalog record, the partitions whose vectors are held, and those vectors in
    whichever store (lib/store/vector_index.py); `ivf` and `exact_only` say how the files store searches."""

    record: DatasetRecord
    partitions: dict[str, LoadedPartition]
    index: VectorIndex
    left_out: list[LeftOutFile] = field(default_factory=list)  # partitions and files not served, and why
    ivf: IvfRecord | None = None  # the tuned IVF parameters the dataset is searched with (None: exact, or HNSW)
    exact_only: list[str] = field(default_factory=list)  # partitions IVF does not cover, searched exactly
    store: str = "files"
    ef_search: int | None = None  # the tuned hnsw.ef_search the store database is searched with

    @property
    def count(self) -> int:
        return sum(p.record.count for p in self.partitions.values())

    def search(self, vectors: np.ndarray, depth: int, chosen: Sequence[str] | None = None,
               exact: bool = False, among: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-`depth` (scores, ids) over the chosen partitions (all when none are chosen), only among the
        ids `among` when given; `exact` scans every stored vector (VectorIndex.search)."""
        return self.index.search(vectors, depth, chosen, exact, among)

    def held(self, ids: np.ndarray, names: Sequence[str] | None = None) -> np.ndarray:
        """The ids the loaded partitions (the chosen ones, or all) hold, in order."""
        return self.index.held(ids, names)

    def left_out_why(self, partition: str) -> str | None:
        """Why a partition of the catalog's is not loaded (its file is damaged, or the database lacks it), or None."""
        return next((f.why for f in self.left_out if f.what == f"partition {self.record.name}/{partition}"), None)

    def vector(self, image_id: int) -> np.ndarray:
        """The stored vector of an indexed image, as a (1, dim) array."""
        return self.index.vectors(np.array([image_id]))

    @cached_property
    def ranked(self) -> RankedLists:
        """The ranked lists of recent queries (lib/serve/ranking.py), dropped with the dataset when it reloads."""
        return RankedLists()

    @cached_property
    def order(self) -> IdOrder:
        """Every image's place in the dataset: partitions in name order, each in its index's order."""
        return IdOrder(np.concatenate([self.index.ids_of(name) for name in self.partitions] or [np.zeros(0, np.int64)]))


@dataclass(frozen=True)
class LoadedPartition:
    """A partition served: its catalog record, and the class its folder names ('' in a flat dataset)."""

    record: PartitionRecord
    class_name: str
