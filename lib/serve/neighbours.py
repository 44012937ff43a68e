"""Pairs of close images in a whole dataset, found with the dataset's own index, a batch of queries at a time.

Every vector is searched for its `neighbours` nearest (k-NN, not a range search: the dataset's exact shards,
its shared IVF layer, HNSW and IVF-PQ all answer k-NN but not all of them answer range queries). Memory stays
at one batch of results plus the pairs kept; nothing of size N x N is ever made. A group larger than
`neighbours` is still found whole: its members link to one another in a chain.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

NEIGHBOURS = 32
BATCH = 1024
Search = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]


class ClosePairs(NamedTuple):
    """Pairs of positions (first < second) into the searched vectors, with their cosine, each pair once."""

    first: np.ndarray
    second: np.ndarray
    score: np.ndarray


def positions_of(ids: np.ndarray, found: np.ndarray) -> np.ndarray:
    """The position in `ids` of every id in `found` (-1 for an id `ids` lacks, as faiss marks "no result")."""
    order = np.argsort(ids, kind="stable")
    slot = np.searchsorted(ids[order], found).clip(0, max(len(ids) - 1, 0))
    known = (found >= 0) & (ids[order][slot] == found) if len(ids) else np.zeros(found.shape, bool)
    return np.where(known, order[slot], -1)


def close_pairs(search: Search, ids: np.ndarray, vectors: np.ndarray, min_score: float,
                neighbours: int = NEIGHBOURS, batch: int = BATCH) -> ClosePairs:
    """Every pair of indexed vectors whose cosine is at least `min_score`, among each one's nearest neighbours;
    `search(queries, k)` gives (scores, ids), as the dataset's own index does (`LoadedDataset.search`)."""
    assert len(ids) == len(vectors), "one id per vector"
    k = min(neighbours + 1, len(ids))
    firsts, seconds, scores = [], [], []
    for start in range(0, len(ids), batch):
        found_scores, found_ids = search(np.ascontiguousarray(vectors[start:start + batch], np.float32), k)
        query = np.repeat(np.arange(start, start + len(found_ids)), k).reshape(found_ids.shape)
        other = positions_of(ids, found_ids)
        keep = (other >= 0) & (other != query) & (found_scores >= min_score)
        firsts.append(np.minimum(query, other)[keep])
        seconds.append(np.maximum(query, other)[keep])
        scores.append(found_scores[keep])
    if not firsts:
        return ClosePairs(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    first, second, score = np.concatenate(firsts), np.concatenate(seconds), np.concatenate(scores)
    _, unique = np.unique(first * len(ids) + second, return_index=True)
    return ClosePairs(first[unique], second[unique], score[unique].astype(np.float32))
