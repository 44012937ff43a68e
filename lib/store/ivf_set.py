"""The IVF lists of a dataset's partitions searched as one index, all of them or a chosen few, then re-ranked.

Written for both sides: the server searches with it, and the builder tunes nprobe with it, so the recall
recorded at build time is the recall of the code that serves.

- All partitions: one IVF index over the stacked lists (built once), probing `nprobe` lists per query.
- Chosen partitions: only lists that hold vectors of those partitions are probed (probing by the full
  quantizer found 3 % of the true neighbours for one partition in the prototype, 98 % this way), with the
  filtered nprobe; a choice of fewer vectors than `exact_below` is scanned exactly instead.
- Compressed codes (sq8, pq): `rerank` x max(depth, RERANK_FLOOR) candidates are scored again exactly from
  the partitions' stored vectors. The floor keeps the candidates the same for every depth up to it, so the
  first n results of a deeper search are exactly a shallower search's (pages continue exactly); with
  flat codes the probed lists alone decide, so that holds at any depth.
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import faiss
import numpy as np

from lib.store.exact_set import ExactSet
from lib.store.ivf_files import TrainedIVF, nonempty_lists
from lib.store.records import IvfRecord

RERANK_FLOOR = 100
RERANK_BATCH = 32  # queries whose candidates are gathered at once (32 x 800 x 512 floats = 52 MB at most)
STACK_CACHE = 64  # assembled indexes of chosen partitions kept per dataset (0.1-0.5 ms to assemble one)


def _search_preassigned(index: faiss.IndexIVF, vectors: np.ndarray, k: int, lists: np.ndarray,
                        scores: np.ndarray, selector: faiss.IDSelector | None = None) -> tuple[np.ndarray, np.ndarray]:
    """IndexIVF.search_preassigned with nprobe given per call, not set on the shared index (threads), through
    the C++ method: faiss's Python wrapper refuses SearchParameters here."""
    found, ids = np.empty((len(vectors), k), np.float32), np.empty((len(vectors), k), np.int64)
    lists, scores = np.ascontiguousarray(lists, np.int64), np.ascontiguousarray(scores, np.float32)
    index.search_preassigned_c(len(vectors), faiss.swig_ptr(vectors), k, faiss.swig_ptr(lists),
                               faiss.swig_ptr(scores), faiss.swig_ptr(found), faiss.swig_ptr(ids), False,
                               faiss.SearchParametersIVF(nprobe=lists.shape[1], sel=selector))
    return found, ids


class IvfSet:
    """Search over partitions that share one trained quantizer; `params` holds the tuned settings."""

    def __init__(self, trained: TrainedIVF, shards: dict[str, faiss.IndexIVF], exact: ExactSet,
                 params: IvfRecord) -> None:
        self.trained, self.shards, self.exact, self.params = trained, shards, exact, params
        self.names = frozenset(shards)
        self.all = trained.stacked(list(shards.values()))
        self.lists = {name: nonempty_lists(shard) for name, shard in shards.items()}
        self.centroids = trained.centroids()
        self._stack = lru_cache(maxsize=STACK_CACHE)(self._assemble)

    def _assemble(self, chosen: tuple[str, ...]) -> tuple[faiss.IndexIVF, np.ndarray]:
        lists = np.unique(np.concatenate([self.lists[name] for name in chosen]))
        return self.trained.stacked([self.shards[name] for name in chosen]), lists

    def _probes(self, vectors: np.ndarray, allowed: np.ndarray, nprobe: int) -> tuple[np.ndarray, np.ndarray]:
        """The `nprobe` lists among `allowed` nearest to each query: (scores, list numbers), best first."""
        scores = vectors @ self.centroids[allowed].T
        nprobe = min(nprobe, len(allowed))
        top = np.argpartition(-scores, nprobe - 1, axis=1)[:, :nprobe]
        order = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), axis=1), 1)
        return np.take_along_axis(scores, order, 1).astype(np.float32), allowed[order]

    def candidates(self, vectors: np.ndarray, pool: int, chosen: Sequence[str] | None, nprobe: int,
                   selector: faiss.IDSelector | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The top `pool` (scores, ids) by the codes alone, over all partitions (chosen None) or the chosen ones,
        among the ids the selector admits (all without one)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if chosen is None:
            return self.all.search(vectors, pool, params=faiss.SearchParametersIVF(nprobe=nprobe, sel=selector))
        index, allowed = self._stack(tuple(sorted(chosen)))
        scores, lists = self._probes(vectors, allowed, nprobe)
        return _search_preassigned(index, vectors, pool, lists, scores, selector)

    def rerank(self, vectors: np.ndarray, ids: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact scores of the candidate ids from the stored vectors; the top `depth` of each row.

        Candidates are gathered RERANK_BATCH queries at a time, one read of each partition's rows per batch."""
        scores = np.full(ids.shape, -np.inf, np.float32)
        for start in range(0, len(ids), RERANK_BATCH):
            block = ids[start:start + RERANK_BATCH]
            rows, columns = np.nonzero(block >= 0)
            stored = self.exact.vectors(block[rows, columns])
            scores[start + rows, columns] = np.einsum("ij,ij->i", stored, vectors[start + rows])
        best = np.argsort(-scores, axis=1, kind="stable")[:, :depth]
        return np.take_along_axis(scores, best, 1), np.where(np.take_along_axis(scores, best, 1) > -np.inf,
                                                             np.take_along_axis(ids, best, 1), -1)

    @property
    def reranks(self) -> bool:
        """Whether candidates are scored again exactly (the codes are compressed)."""
        return self.trained.storage != "flat"

    def pool(self, depth: int, rerank: int) -> int:
        return rerank * max(depth, RERANK_FLOOR) if self.reranks else depth

    def search_with(self, vectors: np.ndarray, depth: int, chosen: Sequence[str] | None, nprobe: int,
                    rerank: int, selector: faiss.IDSelector | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-`depth` (scores, ids) with these settings (the tuner tries several)."""
        scores, ids = self.candidates(vectors, self.pool(depth, rerank), chosen, nprobe, selector)
        return self.rerank(vectors, ids, depth) if self.reranks else (scores[:, :depth], ids[:, :depth])

    def search(self, vectors: np.ndarray, depth: int, chosen: Sequence[str] | None = None,
               selector: faiss.IDSelector | None = None, share: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """Top-`depth` (scores, ids) as tuned: IVF probes and re-ranking, or exact where IVF would not do.

        With a selector that admits `share` of the vectors, 1/share times as many lists are probed, so
        that a filtered search finds about as many results as an unfiltered one."""
        params = self.params
        widen = 1.0 / max(share, 1e-6)
        if chosen is None or self.names <= set(chosen):
            if not params.nprobe:
                return self.exact.search(vectors, depth, None, selector)
            nprobe = min(self.trained.nlist, int(np.ceil(params.nprobe * widen)))
            return self.search_with(vectors, depth, None, nprobe, params.rerank, selector)
        if not params.nprobe_filtered or self.exact.count(chosen) * share < params.exact_below:
            return self.exact.search(vectors, depth, list(chosen), selector)
        nprobe = min(self.trained.nlist, int(np.ceil(params.nprobe_filtered * widen)))
        return self.search_with(vectors, depth, chosen, nprobe, params.rerank_filtered, selector)
