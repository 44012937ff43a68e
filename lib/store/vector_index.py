"""What the server reads of a dataset's vectors, whichever store holds them.

Two stores implement it: the index folder's FAISS files (lib/store/dataset_index.DatasetIndex: exact files
per partition, IVF over them) and the PostgreSQL database of the `store` setting
(lib/store/postgres_vectors.PostgresVectors: one table per dataset with an HNSW index). lib/serve talks to
this and nothing else of either, so every route answers the same way from both.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np


class VectorIndex(Protocol):
    """A dataset's vectors, by partition, at the versions its catalog records."""

    def count(self, chosen: Sequence[str] | None = None) -> int:
        """Vectors in the chosen partitions (all by default)."""

    def search(self, vectors: np.ndarray, depth: int, chosen: Sequence[str] | None = None,
               exact: bool = False, among: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-`depth` (scores, ids) per query, best first, padded with -inf and -1: over the chosen partitions
        (all when None), only among the ids `among` when given; `exact` scans every vector."""

    def held(self, ids: np.ndarray, chosen: Sequence[str] | None = None) -> np.ndarray:
        """The ids the chosen partitions (or all) hold, in the order given."""

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of these ids, in order, float32; NotFoundError for one not held."""

    def ids_of(self, partition: str) -> np.ndarray:
        """The ids of one partition, in its stored order."""

    def blocks(self, names: Sequence[str] | None = None, rows: int = 65_536) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, float32 vectors) of the chosen partitions, about `rows` at a time, one block in memory."""
