"""Tune how a dataset's IVF searches, on a sample of its own vectors against exact search.

Queries are vectors of the dataset itself with their own match dropped (the prototype found this tracks
the recall of unseen queries within 0.01). For each nprobe, smallest first, and for compressed codes
each re-rank factor, smallest first, recall@10 is measured through the same IvfSet the server uses;
the first that reaches the target plus a margin is kept. If none does by a quarter of the lists, the
dataset is searched exactly (nprobe 0) and /indexes says so. Searches restricted to some partitions
get their own nprobe, tuned the same way on random sets of partitions.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import faiss
import numpy as np

from lib.ingest.ivf_train import pick_rows, sample_rows
from lib.store.exact_set import ExactSet
from lib.store.ivf_set import IvfSet

log = logging.getLogger(__name__)

K = 10
QUERIES = 500
MARGIN = 0.01
NPROBES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)
RERANKS = (1, 2, 4, 8)  # x max(depth, 100) candidates re-ranked: 100 to 800 for k = 10
FILTER_TRIALS = 3


@dataclass(frozen=True)
class Tuning:
    nprobe: int  # 0: exact search
    rerank: int
    recall: float
    nprobe_filtered: int
    rerank_filtered: int
    recall_filtered: float


def exact_top(exact: ExactSet, queries: np.ndarray, k: int, names: Sequence[str] | None = None) -> np.ndarray:
    """Ids of the exact top-k over the chosen partitions, block by block through BLAS (float16 scans are slower)."""
    heap = faiss.ResultHeap(len(queries), k, keep_max=True)
    for ids, vectors in exact.blocks(names):
        scores, rows = faiss.knn(queries, vectors, min(k, len(ids)), metric=faiss.METRIC_INNER_PRODUCT)
        found = np.full((len(queries), k), -1, np.int64)
        found[:, :rows.shape[1]] = ids[rows]
        padded = np.full((len(queries), k), -np.inf, np.float32)
        padded[:, :scores.shape[1]] = scores
        heap.add_result(padded, found)
    heap.finalize()
    return heap.I


def recall_at_k(found: np.ndarray, truth: np.ndarray, own: np.ndarray) -> float:
    """Mean share of the true top-K (own id dropped) among the top-K found (own id dropped)."""
    hits = []
    for row, true_row, me in zip(found, truth, own, strict=True):
        true_set = set(true_row[(true_row != me) & (true_row >= 0)][:K])
        hits.append(len(true_set & set(row[(row != me) & (row >= 0)][:K])) / max(len(true_set), 1))
    return float(np.mean(hits))


def _recall(ivf: IvfSet, queries: np.ndarray, own: np.ndarray, truth: np.ndarray, candidates: np.ndarray,
            rerank: int) -> float:
    pool = candidates[:, :ivf.pool(K + 1, rerank)]
    return recall_at_k(ivf.rerank(queries, pool, K + 1)[1] if ivf.reranks else pool, truth, own)


def _sweep(ivf: IvfSet, queries: np.ndarray, own: np.ndarray, cases: list[tuple[np.ndarray, Sequence[str] | None]],
           target: float, reranks: Sequence[int]) -> tuple[int, int, float]:
    """The first (nprobe, rerank, recall) whose recall, averaged over the cases (truth, chosen partitions),
    reaches the target; (0, largest factor, best recall) when none does by a quarter of the lists.
    One candidate search per case and nprobe serves every re-rank factor."""
    best = 0.0
    for nprobe in [n for n in NPROBES if n <= max(1, ivf.trained.nlist // 4)]:
        pools = [ivf.candidates(queries, ivf.pool(K + 1, max(reranks)), chosen, nprobe)[1] for _, chosen in cases]
        for rerank in reranks:
            recall = float(np.mean([_recall(ivf, queries, own, truth, pool, rerank)
                                    for (truth, _), pool in zip(cases, pools, strict=True)]))
            best = max(best, recall)
            if recall >= target + MARGIN:
                return nprobe, rerank, recall
    return 0, max(reranks), best


def _filter_sets(exact: ExactSet, exact_below: int, rng: np.random.Generator) -> list[list[str]]:
    """Random sets of partitions just large enough to be searched through IVF (not all of them)."""
    names, sets = list(exact.counts), []
    for _ in range(FILTER_TRIALS):
        chosen, total = [], 0
        for name in rng.permutation(names):
            if total >= exact_below:
                break
            chosen.append(str(name))
            total += exact.counts[name]
        if total >= exact_below and len(chosen) < len(names):
            sets.append(chosen)
    return sets


def tune(ivf: IvfSet, target: float, exact_below: int, seed: int = 0) -> Tuning:
    """The smallest nprobe (then re-rank factor) that reaches `target` recall@10, unfiltered and filtered."""
    rng = np.random.default_rng(seed)
    own, queries = pick_rows(ivf.exact.blocks(), sample_rows(ivf.exact.count(), QUERIES, seed))
    reranks = RERANKS if ivf.reranks else (1,)
    truth = exact_top(ivf.exact, queries, K + 1)
    nprobe, rerank, recall = _sweep(ivf, queries, own, [(truth, None)], target, reranks)
    log.info("tuned: nprobe %d, re-rank x%d, recall@10 %.3f", nprobe, rerank, recall)
    sets = _filter_sets(ivf.exact, exact_below, rng) if nprobe else []
    if not sets:
        return Tuning(nprobe, rerank, recall, nprobe, rerank, recall)
    cases: list[tuple[np.ndarray, Sequence[str] | None]] = [(exact_top(ivf.exact, queries, K + 1, chosen), chosen)
                                                            for chosen in sets]
    filtered = _sweep(ivf, queries, own, cases, target, reranks)
    log.info("tuned for partition filters: nprobe %d, re-rank x%d, recall@10 %.3f", *filtered)
    return Tuning(nprobe, rerank, recall, *filtered)
