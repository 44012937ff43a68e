"""The pairs table, read a chunk of rows at a time: a CSV, a Parquet file, or the metadata of a
clip-retrieval embeddings folder. Reading twice (once to encode, once to write the output) keeps only
one chunk of rows in memory, whatever the size of the table."""
from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from lib.data.embeddings_folder import PATH_COLUMN, embeddings_parts, is_embeddings_folder
from lib.errors import CaptionTableError

IMAGE_COLUMNS = ("image", "image_path", "path", "file", "filename", "img", "url")
CAPTION_COLUMNS = ("caption", "text", "description", "title", "label")
PARQUET_SUFFIXES = (".parquet", ".pq")

Row = dict[str, str]


@dataclass(frozen=True)
class PairsSource:
    """Where the rows come from, the columns written back, and which hold the image and the caption."""

    path: Path
    kind: str  # "csv", "parquet" or "embeddings" (a clip-retrieval embeddings folder)
    columns: list[str]
    image_column: str
    caption_column: str

    def chunks(self, rows: int) -> Iterator[list[Row]]:
        """Every row in order, `rows` at a time, each value a string ('' where empty)."""
        assert rows > 0, "chunks of at least one row"
        try:
            if self.kind == "csv":
                yield from _csv_chunks(self.path, rows)
            else:
                for path in self._parquet_files():
                    yield from _parquet_chunks(path, self.columns, rows)
        except (OSError, UnicodeDecodeError, csv.Error, pa.ArrowException) as err:
            raise CaptionTableError(f"cannot read {self.path}: {err}") from None

    def _parquet_files(self) -> list[Path]:
        if self.kind == "embeddings":
            return [part.metadata for part in embeddings_parts(self.path)]
        return [self.path]


def _csv_chunks(path: Path, rows: int) -> Iterator[list[Row]]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        chunk: list[Row] = []
        for row in csv.DictReader(handle):
            chunk.append({k: v or "" for k, v in row.items() if k is not None})
            if len(chunk) == rows:
                yield chunk
                chunk = []
        if chunk:
            yield chunk


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _parquet_chunks(path: Path, columns: list[str], rows: int) -> Iterator[list[Row]]:
    for batch in pq.ParquetFile(path).iter_batches(batch_size=rows, columns=columns):
        yield [{k: _text(v) for k, v in row.items()} for row in batch.to_pylist()]


def _pick(columns: Sequence[str], wanted: str | None, candidates: Sequence[str], what: str, path: Path) -> str:
    if wanted is not None:
        if wanted not in columns:
            raise CaptionTableError(f"{path} has no {what} column {wanted!r}; its columns are {', '.join(columns)}")
        return wanted
    lowered = {name.strip().lower(): name for name in columns}
    found = next((lowered[c] for c in candidates if c in lowered), None)
    if found is None:
        raise CaptionTableError(f"{path} has no {what} column (looked for {', '.join(candidates)}); its columns are "
                                f"{', '.join(columns) or 'none'}; name yours with --{what}-column")
    return found


def _csv_columns(path: Path) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            return list(next(csv.reader(handle), []))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise CaptionTableError(f"cannot read {path}: {err}") from None


def _parquet_columns(path: Path) -> list[str]:
    """The columns that can be written to a CSV: binary ones (image bytes) are left out."""
    try:
        schema = pq.ParquetFile(path).schema_arrow
    except (OSError, pa.ArrowException) as err:
        raise CaptionTableError(f"cannot read {path} as Parquet: {err}") from None
    binary = (pa.types.is_binary, pa.types.is_large_binary, pa.types.is_fixed_size_binary)
    return [f.name for f in schema if not any(test(f.type) for test in binary)]


def open_pairs(path: Path, image_column: str | None = None, caption_column: str | None = None) -> PairsSource:
    """Recognise the input (an embeddings folder, a Parquet file by its suffix, else a CSV) and its columns."""
    if not path.exists():
        raise CaptionTableError(f"{path} does not exist; give a CSV, a Parquet file or a clip-retrieval "
                                "embeddings folder")
    if path.is_dir():
        if not is_embeddings_folder(path):
            raise CaptionTableError(f"{path} is a folder but not a clip-retrieval embeddings folder "
                                    "(img_emb/ and metadata/); give a CSV or a Parquet file")
        kind, columns = "embeddings", _parquet_columns(embeddings_parts(path)[0].metadata)
        image_column = image_column or PATH_COLUMN
    elif path.suffix.lower() in PARQUET_SUFFIXES:
        kind, columns = "parquet", _parquet_columns(path)
    else:
        kind, columns = "csv", _csv_columns(path)
    image = _pick(columns, image_column, IMAGE_COLUMNS, "image", path)
    caption = _pick(columns, caption_column, CAPTION_COLUMNS, "caption", path)
    return PairsSource(path, kind, columns, image, caption)
