"""Top-k search with FAISS that leaves out each query's own matches: the best captions for an image that
are not its own, the best images for a caption that are not its own.

Never a dense queries x pool matrix: queries go in batches to `faiss.knn` (exact inner product, which
is cosine for these normalised vectors, computed with BLAS in blocks and kept as a k-heap per query),
so memory is the pool plus batch x k results. Each batch asks for k plus the largest own-group of its
queries, so that k remain after the own ones are dropped; queries are taken in order of group size so
that one image with a thousand captions does not make every batch wide.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import faiss
import numpy as np

MAX_RESULTS = 4_000_000  # batch rows x k kept at once (~48 MB of scores and ids)
MAX_BATCH = 4096


@dataclass(frozen=True)
class OwnGroups:
    """Which pool ids belong to each query (the captions of an image, or the images of a caption)."""

    keys: np.ndarray  # sorted int64 query * pool_size + pool id, one per distinct pair
    sizes: np.ndarray  # own ids per query
    pool_size: int

    @classmethod
    def from_pairs(cls, queries: np.ndarray, pool: np.ndarray, query_count: int, pool_size: int) -> OwnGroups:
        """From the distinct (query id, pool id) pairs."""
        keys = np.unique(queries.astype(np.int64) * pool_size + pool)
        return cls(keys, np.bincount(keys // pool_size, minlength=query_count), pool_size)

    def contains(self, query_ids: np.ndarray, results: np.ndarray) -> np.ndarray:
        """For each query (row) and each of its results, whether the result is one of the query's own."""
        if len(self.keys) == 0:
            return np.zeros(results.shape, dtype=bool)
        wanted = query_ids.astype(np.int64)[:, None] * self.pool_size + results
        found = np.minimum(np.searchsorted(self.keys, wanted), len(self.keys) - 1)
        return self.keys[found] == wanted


class TopK(NamedTuple):
    queries: np.ndarray  # query ids of this batch
    ids: np.ndarray  # (queries, k) pool ids, best first; -1 where the pool ran out
    scores: np.ndarray  # (queries, k) cosine; nan where the pool ran out


def _batches(order: np.ndarray, sizes: np.ndarray, k: int, pool_size: int) -> Iterator[tuple[np.ndarray, int]]:
    """Slices of `order` (ascending own-group size) and the number of results each must ask for."""
    start = 0
    while start < len(order):
        rows = MAX_BATCH
        while True:
            batch = order[start:start + rows]
            wanted = min(pool_size, k + int(sizes[batch[-1]]))
            if rows == 1 or len(batch) * wanted <= MAX_RESULTS:
                break
            rows = max(1, rows // 2)
        yield batch, wanted
        start += len(batch)


def top_others(query_vectors: np.ndarray, query_ids: np.ndarray, pool: np.ndarray, own: OwnGroups,
               k: int) -> Iterator[TopK]:
    """The k best pool entries for each query in `query_ids` that are not its own, in batches."""
    assert k >= 1, "k must be at least 1"
    assert pool.dtype == np.float32 and pool.flags.c_contiguous, "the pool must be C-contiguous float32"
    if len(pool) == 0 or len(query_ids) == 0:
        return
    order = query_ids[np.argsort(own.sizes[query_ids], kind="stable")]
    for batch, wanted in _batches(order, own.sizes, k, len(pool)):
        scores, ids = faiss.knn(np.ascontiguousarray(query_vectors[batch]), pool, wanted,
                                metric=faiss.METRIC_INNER_PRODUCT)
        dropped = own.contains(batch, ids) | (ids < 0)
        keep = np.argsort(dropped, axis=1, kind="stable")[:, :k]  # the first k kept, still best first
        ids, scores = np.take_along_axis(ids, keep, 1), np.take_along_axis(scores, keep, 1)
        gone = np.take_along_axis(dropped, keep, 1)
        ids[gone], scores[gone] = -1, np.nan
        if ids.shape[1] < k:
            pad = k - ids.shape[1]
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=np.nan)
        yield TopK(batch, ids, scores)
