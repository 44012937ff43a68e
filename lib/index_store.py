"""FAISS inner-product indexes on disk: names, index types, atomic writes and verified reads."""
from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import math
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import faiss
import numpy as np

from lib.errors import ClipSearchError

log = logging.getLogger(__name__)

INDEX_TYPES = ("flat", "hnsw", "ivfpq")
HNSW_NEIGHBOURS = 32
IVFPQ_MIN_VECTORS = 10_000  # below this, k-means for PQ has too little to learn from: exact search is as fast
TMP_SUFFIX = ".tmp"


class IndexFileError(ClipSearchError):
    """An index file that is missing, damaged, or not the one the catalog recorded."""


def image_index_name(dataset: str, partition: str, dim: int) -> str:
    return f"image_{dataset}_{partition}_{dim}.index"


def text_index_name(vocab: str, dim: int) -> str:
    return f"text_{vocab}_{dim}.index"


def effective_index_type(requested: str, count: int) -> str:
    """The type a partition of `count` vectors really gets: IVF-PQ only where it has enough to train on."""
    if requested not in INDEX_TYPES:
        raise ValueError(f"unknown index type {requested!r}; expected one of {', '.join(INDEX_TYPES)}")
    return "flat" if requested == "ivfpq" and count < IVFPQ_MIN_VECTORS else requested


def _ivfpq(vectors: np.ndarray) -> faiss.Index:
    """IVF-PQ for speed and size, with exact re-ranking of its candidates for recall."""
    count, dim = vectors.shape
    lists = max(1, min(int(4 * math.sqrt(count)), count // 39))
    sub_quantizers = max(m for m in (1, 2, 4, 8, 16, 32, 64) if dim % m == 0 and m <= max(1, dim // 4))
    ivf = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, lists, sub_quantizers, 8, faiss.METRIC_INNER_PRODUCT)
    ivf.nprobe = min(lists, 16)
    index = faiss.IndexRefineFlat(ivf)
    index.k_factor = 4
    index.train(vectors)
    return index


def build_index(vectors: np.ndarray, ids: np.ndarray, index_type: str = "flat") -> faiss.Index:
    """An index over normalised float32 vectors searched by inner product, keyed by catalog ids."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    assert vectors.ndim == 2 and len(vectors) == len(ids), "one id per vector"
    dim = vectors.shape[1]
    kind = effective_index_type(index_type, len(vectors))
    if kind == "hnsw":
        inner = faiss.IndexHNSWFlat(dim, HNSW_NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efSearch = 64
    elif kind == "ivfpq":
        inner = _ivfpq(vectors)
    else:
        inner = faiss.IndexFlatIP(dim)
    index = faiss.IndexIDMap2(inner)
    if len(vectors):
        index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))
    return index


def index_type_of(index: faiss.Index) -> str:
    inner = faiss.downcast_index(index.index) if hasattr(index, "id_map") else faiss.downcast_index(index)
    if isinstance(inner, faiss.IndexHNSW):
        return "hnsw"
    if isinstance(inner, faiss.IndexRefine):
        return "ivfpq"
    return "flat"


def vectors_of(index: faiss.Index) -> tuple[np.ndarray, np.ndarray]:
    """The ids and exact vectors an index holds (every type here keeps exact vectors)."""
    ids = faiss.vector_to_array(index.id_map).astype(np.int64)
    inner = faiss.downcast_index(index.index)
    source = faiss.downcast_index(inner.refine_index) if isinstance(inner, faiss.IndexRefine) else inner
    vectors = source.reconstruct_n(0, index.ntotal) if index.ntotal else np.zeros((0, index.d), np.float32)
    return ids, vectors


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_staged(data: bytes | np.ndarray, path: Path) -> tuple[Path, str]:
    """Write `path`.tmp completely and durably; return it and its SHA-256. `publish` then makes it final."""
    staged = path.with_name(path.name + TMP_SUFFIX)
    with open(staged, "wb") as handle:
        handle.write(memoryview(data))
        handle.flush()
        os.fsync(handle.fileno())
    return staged, hashlib.sha256(memoryview(data)).hexdigest()


def stage_index(index: faiss.Index, path: Path) -> tuple[Path, str]:
    return write_staged(faiss.serialize_index(index), path)


def publish(staged: Path) -> Path:
    """Atomically replace the final file with the staged one (rename), and make the rename durable."""
    final = staged.with_name(staged.name[: -len(TMP_SUFFIX)])
    os.replace(staged, final)
    fsync_dir(final.parent)
    return final


def settle(path: Path, expected_sha256: str, discard: bool = False) -> None:
    """Finish an interrupted publish: if the staged file is the one the catalog recorded, move it in.

    With `discard` (only for a builder that holds the build lock), a staged file that matches nothing,
    left by a build that stopped before its catalog commit, is deleted. Readers never delete: the
    staged file may belong to a build in progress.
    """
    staged = path.with_name(path.name + TMP_SUFFIX)
    if not staged.exists():
        return
    if sha256_file(staged) == expected_sha256:
        if not (path.exists() and sha256_file(path) == expected_sha256):
            publish(staged)
            log.info("finished the interrupted write of %s", path.name)
    elif discard:
        staged.unlink(missing_ok=True)


@contextmanager
def build_lock(folder: Path, name: str) -> Iterator[None]:
    """One build per dataset or vocabulary at a time; a second one stops with a message instead of racing.

    A POSIX record lock (lockf), not flock: it belongs to this process only, so the DataLoader workers
    it forks do not inherit it, and a build killed with SIGKILL frees it at once even while an
    orphaned worker lingers for a few seconds.
    """
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f".build-{name}.lock", "w") as handle:
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            raise ClipSearchError(f"another build of {name!r} is running; wait for it to finish") from None
        yield


def read_index(path: Path, expected_sha256: str | None = None, mmap: bool = True) -> faiss.Index:
    """Read an index file, memory-mapped where possible; refuse one that is not the recorded file."""
    if not path.is_file():
        raise IndexFileError(f"index file {path} is missing; re-run the builder to recreate it")
    if expected_sha256 is not None and sha256_file(path) != expected_sha256:
        raise IndexFileError(f"index file {path} does not match the catalog (a build was interrupted or the "
                             "file was changed); re-run the builder to repair it")
    try:
        return faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC if mmap else 0)
    except RuntimeError as err:
        raise IndexFileError(f"index file {path} is damaged ({str(err).splitlines()[0]}); "
                             "re-run the builder to recreate it") from None
