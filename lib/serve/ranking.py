"""Ranked lists that page exactly, the adaptive relevance cut-off, date order and rank fusion.

A query's results are one ranked list, grown on demand in fixed steps (`RankedLists`): level j holds the
results of a search of depth BASE_DEPTH x 2**j, kept as they were, followed by what the deeper search adds
below the last score kept. Every level is a function of the query and the index alone, so a page read from
any worker, cached or not, continues the one before it exactly (no duplicates, no gaps, scores never
rising), also where approximate search could not page by itself (IVF with re-ranked codes: a deeper search
may re-rank other candidates; one that scores above the list's last score is then left out, never shown
out of order). Where an approximate search comes back with fewer results than asked (its probed lists
hold no more), the next levels search exactly, so that the list still reaches the end of the dataset.
The lists are cached for a while (CACHE_SECONDS), so that scrolling costs one search.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import numpy as np

BASE_DEPTH = 100  # the first level; ivf_set.RERANK_FLOOR: up to it, IVF's re-ranked results are a prefix
MAX_DEPTH = 100_000  # no list grows past this many results
CACHE_SECONDS = 600.0
CACHE_LISTS = 256
CACHE_RESULTS = 2_000_000  # results kept in all, 12 bytes each: at most 24 MB of lists per worker
CUTOFF_DEPTH = 1000  # the auto cut-off reads the scores of at most this many first results ...
CUTOFF_SHARE = 0.5  # ... and of at most this share of the searched images (the low tail has gaps too)
CUTOFF_MIN_KEPT = 4  # it keeps at least this many
RRF_K = 60  # reciprocal rank fusion: score = sum of 1 / (RRF_K + rank), rank from 1 (Cormack et al., 2009)
FUSION_DEPTH = 1000  # hybrid mode fuses the first FUSION_DEPTH of each list, whatever page is asked


@dataclass
class Ranked:
    """A ranked list: scores non-increasing, ids unique; `complete` when no deeper search would add more."""

    scores: np.ndarray
    ids: np.ndarray
    complete: bool
    level: int = 0
    exact: bool = False  # whether its last level searched exactly (an approximate one came back short)

    def __len__(self) -> int:
        return len(self.ids)


Search = Callable[[int, bool], tuple[np.ndarray, np.ndarray]]  # (depth, exact) -> one query's (scores, ids)


def _valid(scores: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = ids >= 0
    scores, ids = np.asarray(scores[keep], np.float32), np.asarray(ids[keep], np.int64)
    order = np.lexsort((ids, -scores))  # ties in id order, whatever order the index gave them in
    return scores[order], ids[order]


def extend(ranked: Ranked | None, search: Search, count: int) -> Ranked:
    """The list grown level by level until it holds `count` results or is complete."""
    while ranked is None or (len(ranked) < count and not ranked.complete):
        level = 0 if ranked is None else ranked.level + 1
        depth = min(BASE_DEPTH * 2 ** level, MAX_DEPTH)
        exact = ranked is not None and ranked.exact
        scores, ids = _valid(*search(depth, exact))
        short = len(ids) < depth
        complete = (short and exact) or depth >= MAX_DEPTH
        if ranked is not None:
            last = ranked.scores[-1] if len(ranked) else np.inf
            new = ~np.isin(ids, ranked.ids) & (scores <= last)
            scores, ids = np.concatenate([ranked.scores, scores[new]]), np.concatenate([ranked.ids, ids[new]])
        ranked = Ranked(scores, ids, complete, level, exact or short)
    return ranked


class RankedLists:
    """Ranked lists by query key, kept CACHE_SECONDS after their last use (at most CACHE_LISTS lists and
    CACHE_RESULTS results, the least recently used go first); thread-safe."""

    def __init__(self, seconds: float = CACHE_SECONDS, size: int = CACHE_LISTS,
                 clock: Callable[[], float] = time.monotonic, results: int = CACHE_RESULTS) -> None:
        self.seconds, self.size, self.clock, self.results = seconds, size, clock, results
        self._lists: OrderedDict[Hashable, tuple[float, Ranked]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, search: Search, count: int) -> Ranked:
        """The list of `key` holding at least `count` results (or all there are)."""
        now = self.clock()
        with self._lock:
            cached = self._lists.get(key)
        ranked = cached[1] if cached is not None and now - cached[0] <= self.seconds else None
        grown = extend(ranked, search, count)
        with self._lock:
            self._lists[key] = (now, grown)
            self._lists.move_to_end(key)
            held = sum(len(ranked) for _, ranked in self._lists.values())
            while len(self._lists) > self.size or (held > self.results and len(self._lists) > 1):
                held -= len(self._lists.popitem(last=False)[1][1])
        return grown


def auto_cutoff(scores: np.ndarray, searched: int) -> float | None:
    """Where the query's own scores fall apart: the middle of the widest gap between consecutive scores
    among the first min(CUTOFF_DEPTH, CUTOFF_SHARE x searched), after at least CUTOFF_MIN_KEPT results.

    The relevant images of a query stand above the rest with a gap, and the rest are dense; the widest
    gaps of the whole list lie in its sparse low tail, so only its upper part is read. Measured on the demo
    dataset (bench.search_cutoff, 1,800 images): colour+shape queries precision 0.92, recall 0.96. None
    when there are too few scores to cut.
    """
    window = scores[:max(min(CUTOFF_DEPTH, int(searched * CUTOFF_SHARE)), 0)]
    if len(window) <= CUTOFF_MIN_KEPT:
        return None
    gaps = window[:-1] - window[1:]
    at = CUTOFF_MIN_KEPT - 1 + int(np.argmax(gaps[CUTOFF_MIN_KEPT - 1:]))
    return float((window[at] + window[at + 1]) / 2)


def kept_count(ranked: Ranked, threshold: float) -> int:
    """How many of the list's results score at least `threshold`."""
    return int(np.searchsorted(-ranked.scores, -threshold, side="right"))


def date_order(ids: np.ndarray, scores: np.ndarray, taken: np.ndarray, newest: bool) -> np.ndarray:
    """Positions of the results by capture time (newest or oldest first), ties by score, then id."""
    return np.lexsort((ids, -scores, -taken if newest else taken))


def fuse(lists: Sequence[np.ndarray], depth: int = FUSION_DEPTH) -> tuple[np.ndarray, np.ndarray]:
    """Reciprocal rank fusion of ranked id lists (each best first): (scores, ids), best first, ties by id."""
    total: dict[int, float] = {}
    for ranked in lists:
        for rank, image_id in enumerate(ranked[:depth].tolist(), 1):
            total[image_id] = total.get(image_id, 0.0) + 1.0 / (RRF_K + rank)
    ids = np.fromiter(total, np.int64, len(total))
    scores = np.fromiter(total.values(), np.float64, len(total)).astype(np.float32)
    order = np.lexsort((ids, -scores))
    return scores[order], ids[order]
