"""Read a clip-retrieval embeddings folder in chunks: img_emb/img_emb_N.npy beside metadata/metadata_N.parquet.

That is the layout `clip-retrieval inference` writes: part N's vectors (float16 or float32, one row per
image) and part N's metadata (an `image_path` column, often `caption` and more) in the same row order.
Vectors are memory-mapped and read a chunk at a time, so a folder far larger than memory can be read;
each chunk comes back as float32 and L2-normalised (a no-op for vectors already normalised).
"""
from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lib.errors import EmbeddingsFolderError

VECTORS_FOLDER, METADATA_FOLDER = "img_emb", "metadata"
PATH_COLUMN = "image_path"
_NUMBERED = re.compile(r"^(?:img_emb|metadata)_(\d+)\.(?:npy|parquet)$")


@dataclass(frozen=True)
class EmbeddingsPart:
    """One numbered part: its vectors file and its metadata file, whose rows match one to one."""

    number: int
    vectors: Path
    metadata: Path


class EmbeddingsChunk(NamedTuple):
    metadata: pa.Table  # the requested metadata columns of these rows
    vectors: np.ndarray  # float32 (rows, dim), L2-normalised

    @property
    def paths(self) -> list[str]:
        return [str(path) for path in self.metadata.column(PATH_COLUMN).to_pylist()]


def is_embeddings_folder(path: Path) -> bool:
    return (path / VECTORS_FOLDER).is_dir() and (path / METADATA_FOLDER).is_dir()


def _numbered(folder: Path, suffix: str) -> dict[int, Path]:
    found = {}
    for path in folder.glob(f"*{suffix}"):
        match = _NUMBERED.match(path.name)
        if match:
            found[int(match.group(1))] = path
    return found


def embeddings_parts(folder: Path) -> list[EmbeddingsPart]:
    """The parts of the folder in number order; refuses a part whose vectors or metadata file is missing."""
    if not is_embeddings_folder(folder):
        raise EmbeddingsFolderError(f"{folder} is not a clip-retrieval embeddings folder: it needs "
                                    f"{VECTORS_FOLDER}/ and {METADATA_FOLDER}/ subfolders")
    vectors = _numbered(folder / VECTORS_FOLDER, ".npy")
    metadata = _numbered(folder / METADATA_FOLDER, ".parquet")
    unmatched = sorted(set(vectors) ^ set(metadata))
    if unmatched:
        raise EmbeddingsFolderError(f"{folder}: part(s) {', '.join(map(str, unmatched))} have a vectors file "
                                    "or a metadata file but not both")
    if not vectors:
        raise EmbeddingsFolderError(f"{folder} holds no {VECTORS_FOLDER}/img_emb_N.npy files")
    return [EmbeddingsPart(n, vectors[n], metadata[n]) for n in sorted(vectors)]


def _open_vectors(part: EmbeddingsPart) -> np.ndarray:
    try:
        vectors = np.load(part.vectors, mmap_mode="r")
    except (OSError, ValueError) as err:
        raise EmbeddingsFolderError(f"cannot read {part.vectors}: {err}") from None
    if vectors.ndim != 2 or vectors.dtype not in (np.float16, np.float32):
        raise EmbeddingsFolderError(f"{part.vectors} holds {vectors.dtype} of shape {vectors.shape}; expected "
                                    "float16 or float32 vectors, one row per image")
    return vectors


def _open_metadata(part: EmbeddingsPart) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(part.metadata)
    except (OSError, pa.ArrowException) as err:
        raise EmbeddingsFolderError(f"cannot read {part.metadata}: {err}") from None


def metadata_columns(folder: Path) -> list[str]:
    """The metadata columns of the folder's first part."""
    return list(_open_metadata(embeddings_parts(folder)[0]).schema_arrow.names)


def embeddings_dim(folder: Path) -> int:
    return int(_open_vectors(embeddings_parts(folder)[0]).shape[1])


def normalised(vectors: np.ndarray) -> np.ndarray:
    """float32 rows of length one (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def _checked_part(part: EmbeddingsPart, columns: Sequence[str], dim: int | None) -> tuple[np.ndarray, pq.ParquetFile]:
    vectors, metadata = _open_vectors(part), _open_metadata(part)
    if metadata.metadata.num_rows != len(vectors):
        raise EmbeddingsFolderError(f"part {part.number}: {part.metadata.name} has {metadata.metadata.num_rows} "
                                    f"rows but {part.vectors.name} has {len(vectors)} vectors")
    missing = [c for c in columns if c not in metadata.schema_arrow.names]
    if missing:
        raise EmbeddingsFolderError(f"{part.metadata} has no column {', '.join(missing)}; its columns are "
                                    f"{', '.join(metadata.schema_arrow.names)}")
    if dim is not None and vectors.shape[1] != dim:
        raise EmbeddingsFolderError(f"{part.vectors} holds {vectors.shape[1]}-d vectors, the parts before it {dim}-d")
    return vectors, metadata


def read_embeddings(folder: Path, chunk_rows: int = 65_536,
                    columns: Sequence[str] = (PATH_COLUMN,)) -> Iterator[EmbeddingsChunk]:
    """Every row of the folder, part by part, `chunk_rows` at a time: metadata columns and vectors."""
    assert chunk_rows > 0, "chunk_rows must be positive"
    dim = None
    for part in embeddings_parts(folder):
        vectors, metadata = _checked_part(part, columns, dim)
        dim, start = vectors.shape[1], 0
        for batch in metadata.iter_batches(batch_size=chunk_rows, columns=list(columns)):
            rows = pa.Table.from_batches([batch])
            yield EmbeddingsChunk(rows, normalised(vectors[start:start + len(rows)]))
            start += len(rows)


# Added by issue 12 (import and export of datasets): whole parts, and the writer.

def part_vectors(part: EmbeddingsPart) -> np.ndarray:
    """A part's vectors as stored (float16 or float32, not normalised), memory-mapped: read rows by index."""
    return _open_vectors(part)


def part_metadata(part: EmbeddingsPart, columns: Sequence[str] = (PATH_COLUMN,), dim: int | None = None) -> pa.Table:
    """The requested metadata columns of a whole part, checked against its vectors (rows, dimension)."""
    return _checked_part(part, columns, dim)[1].read(columns=list(columns))


class EmbeddingsPartWriter:
    """Writes part `number` of a folder in this format, `rows` rows added in order, in bounded memory.

    The vectors go into a memory-mapped .npy; the metadata into a parquet file a batch at a time. Both
    get their final names only when the part is complete (vectors first), so a reader never sees half a part.
    """

    def __init__(self, folder: Path, number: int, rows: int, dim: int, dtype: type = np.float16) -> None:
        assert rows > 0, "a part holds at least one row"
        (folder / VECTORS_FOLDER).mkdir(parents=True, exist_ok=True)
        (folder / METADATA_FOLDER).mkdir(parents=True, exist_ok=True)
        self.vectors_path = folder / VECTORS_FOLDER / f"img_emb_{number}.npy"
        self.metadata_path = folder / METADATA_FOLDER / f"metadata_{number}.parquet"
        self._vectors_tmp = self.vectors_path.with_name(self.vectors_path.name + ".partial")
        self._metadata_tmp = self.metadata_path.with_name(self.metadata_path.name + ".partial")
        self.vectors = np.lib.format.open_memmap(self._vectors_tmp, mode="w+", dtype=dtype, shape=(rows, dim))
        self.rows, self.filled = rows, 0
        self._writer: pq.ParquetWriter | None = None

    def add(self, vectors: np.ndarray, metadata: pa.Table) -> None:
        assert len(vectors) == len(metadata) and self.filled + len(vectors) <= self.rows, "rows beyond the part"
        self.vectors[self.filled:self.filled + len(vectors)] = vectors
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._metadata_tmp, metadata.schema)
        self._writer.write_table(metadata)
        self.filled += len(vectors)

    def close(self) -> None:
        assert self.filled == self.rows, f"part holds {self.filled} of its {self.rows} rows"
        self.vectors.flush()
        del self.vectors
        if self._writer is not None:
            self._writer.close()
        self._vectors_tmp.replace(self.vectors_path)
        self._metadata_tmp.replace(self.metadata_path)
