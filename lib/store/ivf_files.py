"""IVF files of a dataset: one shared, trained quantizer and each partition's inverted lists encoded with it.

Every partition of a dataset searched through IVF uses the same coarse quantizer and codec (SQ ranges or
PQ codebooks), written once as `image_<dataset>_<dim>.quantizer`: an empty, trained faiss IVF index.
A partition's `image_<dataset>_<partition>_<dim>.ivf` holds only its lists (codes and catalog ids); its
quantizer is an empty stand-in, swapped for the shared one when the file is read, so the nlist x dim
centroids are neither copied into every file nor able to disagree between partitions.

faiss pitfalls this module absorbs: objects read or deserialised are already downcast (wrapping them in
downcast_index frees them too early); faiss >= 1.13 objects take no new attributes, so references are kept
in `referenced_objects`; the stand-in quantizer a file brings is left allocated (about 100 bytes), since
handing it back to Python corrupted the heap in the prototype; memory-mapped lists
(`OnDiskInvertedLists`) must not start prefetch threads, which cost 59 ms a query when stacked.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from faiss.contrib.ivf_tools import add_preassigned

from lib.errors import IndexFileError

STORAGE_PATTERN = re.compile(r"^(flat|sq8|pq(\d+))$")


def quantizer_name(dataset: str, dim: int) -> str:
    return f"image_{dataset}_{dim}.quantizer"


def ivf_name(dataset: str, partition: str, dim: int) -> str:
    return f"image_{dataset}_{partition}_{dim}.ivf"


def keep(owner: Any, *objects: object) -> None:
    """Keep faiss objects alive as long as `owner` (faiss does not own what Python handed it)."""
    if not hasattr(owner, "referenced_objects"):
        owner.referenced_objects = []
    owner.referenced_objects.extend(objects)


def new_ivf(storage: str, quantizer: faiss.Index, nlist: int) -> faiss.IndexIVF:
    """An untrained IVF index of the given storage around an already trained coarse quantizer.

    flat keeps exact floats (4 x dim bytes a vector), sq8 one byte a dimension (of the residual to the
    centroid), pq<m> m bytes. Fast-scan PQ is not offered: its lists cannot be memory-mapped or stacked.
    """
    match = STORAGE_PATTERN.match(storage)
    assert match, f"unknown IVF storage {storage!r}"
    dim, ip = quantizer.d, faiss.METRIC_INNER_PRODUCT
    if storage == "flat":
        return faiss.IndexIVFFlat(quantizer, dim, nlist, ip)
    if storage == "sq8":
        return faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, ip, True)
    return faiss.IndexIVFPQ(quantizer, dim, nlist, int(match.group(2)), 8, ip)


def storage_of(index: faiss.IndexIVF) -> str:
    if isinstance(index, faiss.IndexIVFScalarQuantizer):
        return "sq8"
    if isinstance(index, faiss.IndexIVFPQ):
        return f"pq{index.pq.M}"
    return "flat"


def _read(path: Path, flags: int) -> faiss.Index:
    try:
        return faiss.read_index(str(path), flags)
    except RuntimeError as err:
        raise IndexFileError(f"index file {path} is damaged ({str(err).splitlines()[0]}); "
                             "re-run the builder to recreate it") from None


class TrainedIVF:
    """The shared quantizer and codec of a dataset: encodes partitions, reads them back, stacks them."""

    def __init__(self, index: faiss.IndexIVF) -> None:
        assert index.is_trained and index.ntotal == 0, "a trained, empty IVF index"
        self.index = index
        self.quantizer = index.quantizer
        self.dim, self.nlist, self.storage = index.d, index.nlist, storage_of(index)
        self._stand_in = faiss.IndexFlatIP(self.dim)
        self._shell = np.frombuffer(self.partition_bytes(index), dtype=np.uint8)
        self.fit_sum, self.fit_count = 0.0, 0  # of the vectors encoded through this object

    @classmethod
    def read(cls, path: Path) -> TrainedIVF:
        index = _read(path, 0)
        if not isinstance(index, faiss.IndexIVF):
            raise IndexFileError(f"{path} is not a trained IVF quantizer; re-run the builder with --retrain")
        return cls(index)

    def to_bytes(self) -> np.ndarray:
        return faiss.serialize_index(self.index)

    def centroids(self) -> np.ndarray:
        return self.quantizer.reconstruct_n(0, self.nlist)

    def _attach(self, ivf: faiss.IndexIVF) -> faiss.IndexIVF:
        ivf.quantizer = self.quantizer
        ivf.own_fields = False
        keep(ivf, self)
        return ivf

    def empty(self) -> faiss.IndexIVF:
        """A new, empty IVF index with this codec, searching through the shared quantizer."""
        return self._attach(faiss.deserialize_index(self._shell))

    def encode(self, vectors: np.ndarray, ids: np.ndarray) -> faiss.IndexIVF:
        """A partition's lists; the cosine of each vector to its centroid feeds the drift statistic."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        ivf = self.empty()
        if len(vectors):
            scores, lists = self.quantizer.search(vectors, 1)
            add_preassigned(ivf, vectors, np.ascontiguousarray(lists[:, 0]), np.ascontiguousarray(ids, np.int64))
            self.fit_sum, self.fit_count = self.fit_sum + float(scores.sum()), self.fit_count + len(vectors)
        return ivf

    def partition_bytes(self, ivf: faiss.IndexIVF) -> np.ndarray:
        """The file of a partition: its lists and codec, with the empty stand-in instead of the quantizer."""
        shared, ivf.quantizer = ivf.quantizer, self._stand_in
        try:
            return faiss.serialize_index(ivf)
        finally:
            ivf.quantizer = shared

    def open(self, path: Path) -> faiss.IndexIVF:
        """A partition's lists, memory-mapped (pages shared by every process that opens the file)."""
        ivf = _read(path, faiss.IO_FLAG_MMAP)
        if not isinstance(ivf, faiss.IndexIVF) or (ivf.d, ivf.nlist, storage_of(ivf)) != (self.dim, self.nlist,
                                                                                      self.storage):
            raise IndexFileError(f"{path} was not encoded with the dataset's quantizer; re-run the builder")
        lists = faiss.downcast_InvertedLists(ivf.invlists)
        if isinstance(lists, faiss.OnDiskInvertedLists):
            lists.prefetch_nthread = 0
        return self._attach(ivf)

    def stacked(self, shards: Sequence[faiss.IndexIVF]) -> faiss.IndexIVF:
        """One IVF index whose list i is list i of every shard, so a query scans each probed list once and
        computes its distance tables once (searching shards one by one rebuilt PQ tables per shard: 25-40x)."""
        pointers = faiss.InvertedListsPtrVector()
        for shard in shards:
            pointers.push_back(shard.invlists)
        lists = faiss.HStackInvertedLists(pointers.size(), pointers.data())
        index = self.empty()
        index.replace_invlists(lists, False)
        index.ntotal = sum(shard.ntotal for shard in shards)
        keep(index, lists, *shards)
        return index


def nonempty_lists(ivf: faiss.IndexIVF) -> np.ndarray:
    """The numbers of the lists that hold at least one vector of this partition (0.4 us a list)."""
    lists = ivf.invlists
    return np.flatnonzero([lists.list_size(i) for i in range(lists.nlist)]).astype(np.int64)
