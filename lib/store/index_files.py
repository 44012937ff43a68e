"""FAISS inner-product indexes on disk: names, index types, verified reads and the partition commit.

A partition's exact file, `image_<dataset>_<partition>_<dim>.index`, holds its vectors with their catalog
ids: float32 (`flat`, or per-partition `hnsw` / `ivfpq`) or, in a dataset searched through IVF, float16
codes (`fp16`, half the bytes, exact to about 1e-3 in cosine) beside the partition's `.ivf` lists. The
exact file is what incremental builds read back, what re-ranking and `exact` searches use, and what a
new quantizer re-encodes from; the `.ivf` file can always be derived from it.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import faiss
import numpy as np

from lib.errors import IndexFileError
from lib.store.catalog import Catalog, ImageRecord, IvfRecord, PartitionRecord
from lib.store.files import publish, settle, sha256_known, write_staged
from lib.store.ivf_files import TrainedIVF, ivf_name

log = logging.getLogger(__name__)

INDEX_TYPES = ("flat", "hnsw", "ivfpq", "fp16")
HNSW_NEIGHBOURS = 32
IVFPQ_MIN_VECTORS = 10_000  # below this, k-means for PQ has too little to learn from: exact search is as fast


def image_index_name(dataset: str, partition: str, dim: int) -> str:
    return f"image_{dataset}_{partition}_{dim}.index"


def text_index_name(vocab: str, dim: int) -> str:
    return f"text_{vocab}_{dim}.index"


def effective_index_type(requested: str, count: int) -> str:
    """The type a partition of `count` vectors really gets: IVF-PQ only where it has enough to train on.

    `auto` partitions are exact here; a dataset large enough gets its shared IVF from the builder.
    """
    if requested == "auto":
        return "flat"
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
    elif kind == "fp16":  # no reverse id map (IndexIDMap2 keeps ~40 B a vector in memory): ExactSet looks ids up
        inner = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    else:
        inner = faiss.IndexFlatIP(dim)
    index = faiss.IndexIDMap(inner) if kind == "fp16" else faiss.IndexIDMap2(inner)
    if len(vectors):
        index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))
    return index


def index_type_of(index: faiss.Index) -> str:
    inner = faiss.downcast_index(index.index) if hasattr(index, "id_map") else faiss.downcast_index(index)
    if isinstance(inner, faiss.IndexHNSW):
        return "hnsw"
    if isinstance(inner, faiss.IndexRefine):
        return "ivfpq"
    return "fp16" if isinstance(inner, faiss.IndexScalarQuantizer) else "flat"


def ids_of(index: faiss.Index) -> np.ndarray:
    """The catalog ids an index holds, in the order of its vectors."""
    return faiss.vector_to_array(index.id_map).astype(np.int64)


def vectors_of(index: faiss.Index) -> tuple[np.ndarray, np.ndarray]:
    """The ids and exact vectors an index holds (every type here keeps exact vectors)."""
    ids = ids_of(index)
    inner = faiss.downcast_index(index.index)
    source = faiss.downcast_index(inner.refine_index) if isinstance(inner, faiss.IndexRefine) else inner
    vectors = source.reconstruct_n(0, index.ntotal) if index.ntotal else np.zeros((0, index.d), np.float32)
    return ids, vectors


def stage_index(index: faiss.Index, path: Path) -> tuple[Path, str]:
    return write_staged(faiss.serialize_index(index), path)


def verify(path: Path, expected_sha256: str | None) -> Path:
    """Refuse a file that is missing or is not the one the catalog recorded."""
    if not path.is_file():
        raise IndexFileError(f"index file {path} is missing; re-run the builder to recreate it")
    try:
        digest = sha256_known(path) if expected_sha256 is not None else None
    except OSError as err:
        raise IndexFileError(f"index file {path} cannot be read ({err.strerror or err}); fix its permissions or "
                             "re-run the builder to recreate it") from None
    if digest != expected_sha256:
        raise IndexFileError(f"index file {path} does not match the catalog (a build was interrupted or the "
                             "file was changed); re-run the builder to repair it")
    return path


def read_index(path: Path, expected_sha256: str | None = None, mmap: bool = True) -> faiss.Index:
    """Read an index file, memory-mapped where possible; refuse one that is not the recorded file."""
    verify(path, expected_sha256)
    try:
        return faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC if mmap else 0)
    except RuntimeError as err:
        raise IndexFileError(f"index file {path} is damaged ({str(err).splitlines()[0]}); "
                             "re-run the builder to recreate it") from None


class PartitionVectors(NamedTuple):
    """A partition's content for a dataset-wide switch: its record, ids and exact vectors."""

    record: PartitionRecord
    ids: np.ndarray
    vectors: np.ndarray
    keep_exact: bool  # its exact file is float16 already: only the IVF lists are written


def _stage_partition(folder: Path, record: PartitionRecord, ids: np.ndarray, vectors: np.ndarray, index_type: str,
                     ivf: TrainedIVF | None, keep_exact: bool = False) -> tuple[list[Path], PartitionRecord]:
    """Write a partition's files as staged files; the record that names them. `keep_exact`: only the IVF."""
    staged: list[Path] = []
    exact_sha, ivf_file, ivf_sha = record.index_sha256, "", ""
    with discarded_on_error(staged):
        if not keep_exact:
            kind = "fp16" if ivf is not None else effective_index_type(index_type, len(ids))
            path, exact_sha = stage_index(build_index(vectors, ids, kind), folder / record.index_file)
            staged.append(path)
        if ivf is not None:
            ivf_file = Path(record.index_file).with_suffix(".ivf").name
            path, ivf_sha = write_staged(ivf.partition_bytes(ivf.encode(vectors, ids)), folder / ivf_file)
            staged.append(path)
    return staged, PartitionRecord(record.dataset, record.name, record.index_file, exact_sha, len(ids), ivf_file,
                                   ivf_sha)


@contextmanager
def discarded_on_error(staged: list[Path]) -> Iterator[None]:
    """Staged files that will not be committed (an error: a full disk) are removed at once, so as not to hold the
    space; an interrupted build leaves them, as a kill would, for the next build to settle."""
    try:
        yield
    except Exception:
        for file in staged:
            file.unlink(missing_ok=True)
        raise


def settle_partition(folder: Path, record: PartitionRecord, discard: bool = False) -> None:
    """Finish interrupted publishes of a partition's files (see files.settle); a builder also drops strays."""
    settle(folder / record.index_file, record.index_sha256, discard)
    settle((folder / record.index_file).with_suffix(".ivf"), record.ivf_sha256, discard)


def open_partition(folder: Path, partition: PartitionRecord) -> faiss.Index:
    """A partition's index, memory-mapped, after finishing an interrupted publish; refused if not the recorded file."""
    path = folder / partition.index_file
    settle(path, partition.index_sha256)
    return read_index(path, partition.index_sha256, mmap=True)


def dataset_vectors(catalog: Catalog, folder: Path, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """Every id and vector of a dataset, partition after partition (float32, as the index holds them)."""
    parts = [vectors_of(open_partition(folder, partition)) for partition in catalog.partitions(dataset)]
    if not parts:
        record = catalog.dataset(dataset)
        return np.zeros(0, np.int64), np.zeros((0, record.model.dim if record else 0), np.float32)
    return np.concatenate([ids for ids, _ in parts]), np.concatenate([vectors for _, vectors in parts])


def commit_partition(catalog: Catalog, folder: Path, dataset: str, partition: str, ids: np.ndarray,
                     vectors: np.ndarray, removed_ids: Iterable[int] = (), added: Iterable[ImageRecord] = (),
                     index_type: str = "flat", ivf: TrainedIVF | None = None) -> bool:
    """Make one partition hold exactly `ids`/`vectors`: the only way a partition changes on disk.

    The partition's files (its exact index, and its IVF lists when the dataset has a quantizer `ivf`)
    are staged and fsynced, the catalog rows and the files' SHA-256 change in one transaction, then the
    staged files are renamed into place. A crash before the transaction leaves the old partition; after
    it, readers finish the renames (`settle`). An empty partition is dropped. Returns whether files were written.
    """
    path = folder / image_index_name(dataset, partition, vectors.shape[1])
    ivf_path = folder / ivf_name(dataset, partition, vectors.shape[1])
    if len(ids) == 0:
        with catalog.transaction() as db:
            catalog.apply_partition(db, PartitionRecord(dataset, partition, path.name, "", 0), removed_ids, added)
        path.unlink(missing_ok=True)
        ivf_path.unlink(missing_ok=True)
        return False
    staged, record = _stage_partition(folder, PartitionRecord(dataset, partition, path.name, "", 0), ids, vectors,
                                      index_type, ivf)
    with discarded_on_error(staged), catalog.transaction() as db:
        catalog.apply_partition(db, record, removed_ids, added)
    for file in staged:
        publish(file)
    if ivf is None:
        ivf_path.unlink(missing_ok=True)
    log.debug("wrote %s: %d vectors (%s)", path.name, len(ids), "ivf " + ivf.storage if ivf else index_type)
    return True


def commit_ivf(catalog: Catalog, folder: Path, trained: TrainedIVF, record: IvfRecord,
               partitions: Iterable[PartitionVectors]) -> int:
    """Switch a whole dataset to a new quantizer in one transaction: the quantizer file, and every partition's
    IVF lists encoded with it (and its exact file as float16, when it was float32).

    Partitions are encoded one at a time (bounded memory) into staged files; the catalog then changes
    at once, and the files are renamed. A crash before the transaction leaves the old index set whole.
    """
    quantizer, sha = write_staged(trained.to_bytes(), folder / record.quantizer_file)
    staged, records = [quantizer], []
    with discarded_on_error(staged):
        for old, ids, vectors, keep_exact in partitions:
            files, new = _stage_partition(folder, old, ids, vectors, "fp16", trained, keep_exact)
            staged += files
            records.append(new)
        with catalog.transaction() as db:
            catalog.put_ivf(db, dataclasses.replace(record, quantizer_sha256=sha))
            for new in records:
                catalog.apply_partition(db, new, (), ())
    for file in staged:
        publish(file)
    return len(records)


def drop_ivf(catalog: Catalog, folder: Path, dataset: str) -> None:
    """Back to exact search: the IVF row and files go; the exact files (float16 by now) stay as they are."""
    partitions = catalog.partitions(dataset)
    ivf = catalog.ivf(dataset)
    with catalog.transaction() as db:
        catalog.drop_ivf(db, dataset)
    for partition in partitions:
        if partition.ivf_file:
            (folder / partition.ivf_file).unlink(missing_ok=True)
    if ivf is not None:
        (folder / ivf.quantizer_file).unlink(missing_ok=True)
