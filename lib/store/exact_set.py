"""The exact vectors of a dataset's partitions: exact search over any of them, and vectors by catalog id.

Every partition has one exact file (float32, or float16 codes for datasets searched through IVF). They
are searched together through `faiss.IndexShards` (one C++ call that merges the partitions' top-k), and
looked up by id through one sorted array of every id, built when the set is loaded (12 bytes a vector;
faiss's own IndexIDMap2 reverse map would take about 40, in every worker).
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import faiss
import numpy as np

from lib.errors import NotFoundError


def rows_of(index: faiss.Index) -> np.ndarray | None:
    """A numpy view (no copy) of the stored rows of a flat float32 or float16 index, else None.

    Reading candidates through it costs ~3 us; faiss's reconstruct_batch built a decoder per row (~7 us a row).
    The view lives as long as the index it looks into: keep the index.
    """
    dtype: type[np.floating]
    if isinstance(index, faiss.IndexFlat):
        dtype = np.float32
    elif isinstance(index, faiss.IndexScalarQuantizer) and index.sq.qtype == faiss.ScalarQuantizer.QT_fp16:
        dtype = np.float16
    else:
        return None
    if index.ntotal == 0:
        return np.zeros((0, index.d), dtype)
    return faiss.rev_swig_ptr(index.codes.data(), index.codes.size()).view(dtype).reshape(index.ntotal, index.d)


def shards_of(indexes: Sequence[faiss.Index], dim: int) -> faiss.Index:
    """One index over several partitions: faiss searches them in turn and merges the top-k in C++.

    Cheaper than a Python loop over the partitions (one call instead of one per partition); the
    partitions keep their own catalog ids (successive_ids=False).
    """
    shards = faiss.IndexShards(dim, False, False)
    shards.metric_type = faiss.METRIC_INNER_PRODUCT
    for index in indexes:
        shards.add_shard(index)
    return shards


class ExactSet:
    """The exact files of some partitions (name -> faiss index with an id map), searched and read by id."""

    def __init__(self, stores: dict[str, faiss.Index], dim: int) -> None:
        self.stores, self.dim = stores, dim
        self._inner = [faiss.downcast_index(store.index) for store in stores.values()]
        self._rows = [rows_of(inner) for inner in self._inner]
        ids = [faiss.vector_to_array(store.id_map) for store in stores.values()]
        self.counts = dict(zip(stores, map(len, ids), strict=True))
        self._starts = np.cumsum([0] + [len(i) for i in ids])
        every = np.concatenate(ids) if ids else np.zeros(0, np.int64)
        self._position = np.argsort(every, kind="stable").astype(np.int64)
        self._sorted = every[self._position]
        self.all = shards_of(list(stores.values()), dim)

    def count(self, chosen: Sequence[str] | None = None) -> int:
        return sum(self.counts.values()) if chosen is None else sum(self.counts[name] for name in chosen)

    def search(self, vectors: np.ndarray, depth: int, chosen: Sequence[str] | None = None,
               selector: faiss.IDSelector | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-`depth` (scores, ids) over the chosen partitions (all by default), among the ids a
        selector admits when one is given."""
        index = self.all if chosen is None else shards_of([self.stores[name] for name in chosen], self.dim)
        if index.ntotal == 0:
            return np.full((len(vectors), depth), -np.inf, np.float32), np.full((len(vectors), depth), -1)
        params = None if selector is None else faiss.SearchParameters(sel=selector)
        return index.search(np.ascontiguousarray(vectors, dtype=np.float32), depth, params=params)

    def search_among(self, vectors: np.ndarray, depth: int, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-`depth` (scores, ids) among these ids (all held by the set), by reading their vectors:
        for a filter that admits few images, cheaper than a scan of every vector with a selector."""
        found = np.full((len(vectors), depth), -np.inf, np.float32), np.full((len(vectors), depth), -1, np.int64)
        if len(ids) == 0:
            return found
        scores = np.asarray(vectors, np.float32) @ self.vectors(ids).T
        take = min(depth, len(ids))
        top = np.argpartition(-scores, take - 1, axis=1)[:, :take]
        order = np.take_along_axis(top, np.lexsort((ids[top], -np.take_along_axis(scores, top, 1)), axis=1), 1)
        found[0][:, :take], found[1][:, :take] = np.take_along_axis(scores, order, 1), ids[order]
        return found

    def locate(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(store number, row) of each id; -1 where the set does not hold it."""
        ids = np.asarray(ids, dtype=np.int64)
        at = np.minimum(np.searchsorted(self._sorted, ids), max(len(self._sorted) - 1, 0))
        found = (self._sorted[at] == ids) if len(self._sorted) else np.zeros(len(ids), bool)
        position = self._position[at] if len(self._sorted) else np.zeros(len(ids), np.int64)
        store = np.searchsorted(self._starts, position, side="right") - 1
        return np.where(found, store, -1), np.where(found, position - self._starts[np.maximum(store, 0)], -1)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of these ids, in order; NotFoundError for an id the set does not hold."""
        stores, rows = self.locate(ids)
        if (stores < 0).any():
            raise NotFoundError(f"no indexed vector with id {int(np.asarray(ids)[stores < 0][0])}")
        out = np.empty((len(rows), self.dim), np.float32)
        order = np.argsort(stores, kind="stable")
        bounds = np.flatnonzero(np.diff(stores[order])) + 1
        for group in np.split(order, bounds) if len(order) else []:
            store, view = stores[group[0]], self._rows[stores[group[0]]]
            out[group] = view[rows[group]] if view is not None else self._inner[store].reconstruct_batch(rows[group])
        return out

    def _pieces(self, names: Sequence[str] | None, rows: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        numbers = {name: number for number, name in enumerate(self.stores)}
        for name in names if names is not None else list(self.stores):
            number = numbers[name]
            ids, view = faiss.vector_to_array(self.stores[name].id_map), self._rows[number]
            for start in range(0, len(ids), rows):
                end = min(start + rows, len(ids))
                block = view[start:end] if view is not None else self._inner[number].reconstruct_n(start, end - start)
                yield ids[start:end], block

    def blocks(self, names: Sequence[str] | None = None, rows: int = 65_536) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, float32 vectors) of the chosen partitions in order, blocks of about `rows` (small partitions
        are joined, so that each block is worth a BLAS call); one block in memory at a time."""
        ids, vectors, held = [], [], 0
        for piece_ids, piece in self._pieces(names, rows):
            ids.append(piece_ids)
            vectors.append(np.asarray(piece, dtype=np.float32))
            held += len(piece_ids)
            if held >= rows:
                yield np.concatenate(ids), np.concatenate(vectors)
                ids, vectors, held = [], [], 0
        if held:
            yield np.concatenate(ids), np.concatenate(vectors)
