"""Export a dataset's vectors and paths in clip-retrieval's folder format, for the rest of that ecosystem.

    python -m lib.ingest.export NAME DIR [--dtype float16|float32] [--rows-per-file N] [--workspace W]

Writes DIR/img_emb/img_emb_N.npy (one vector a row, L2-normalised) and DIR/metadata/metadata_N.parquet
(`image_path`, and `id`, `partition`, `class_name` from the catalog) in the same row order, partition by
partition in bounded memory. `image_path` is the path as the catalog holds it (relative to the dataset's
folder for a built dataset; as imported for an imported one), escaped as lib/store/names.shown does where it
holds a control character, a backslash or bytes that are not UTF-8 (Parquet strings are UTF-8). The vectors
are written as stored: float32 for exact datasets, float16 for IVF ones, unless --dtype says otherwise.
`build_image_index.py NAME --from-embeddings DIR` reads it back.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from lib.cli import new_parser, run
from lib.data.embeddings_folder import PATH_COLUMN, VECTORS_FOLDER, EmbeddingsPartWriter
from lib.errors import ClipSearchError, NotFoundError
from lib.settings import Settings, add_settings_arguments, settings_from_args
from lib.store.catalog import Catalog, ImageRecord
from lib.store.index_files import index_type_of, read_index, vectors_of
from lib.store.names import shown_moment

ROWS_PER_FILE = 1_000_000  # clip-retrieval's own default part size


class PartWriters:
    """Rows in, parts of `rows_per_file` out (the last one shorter)."""

    def __init__(self, folder: Path, total: int, dim: int, dtype: type, rows_per_file: int) -> None:
        self.folder, self.total, self.dim, self.dtype, self.per_file = folder, total, dim, dtype, rows_per_file
        self.written, self.number = 0, 0
        self.current: EmbeddingsPartWriter | None = None

    def add(self, vectors: np.ndarray, metadata: pa.Table) -> None:
        while len(vectors):
            if self.current is None:
                rows = min(self.per_file, self.total - self.written)
                self.current = EmbeddingsPartWriter(self.folder, self.number, rows, self.dim, self.dtype)
            room = self.current.rows - self.current.filled
            self.current.add(vectors[:room].astype(self.dtype), metadata.slice(0, room))
            self.written += min(room, len(vectors))
            vectors, metadata = vectors[room:], metadata.slice(room)
            if self.current.filled == self.current.rows:
                self.current.close()
                self.current, self.number = None, self.number + 1


def exported_path(record: ImageRecord) -> str:
    """A picture's path; a scene's is its video's with a media fragment of its span ('a.mp4#t=3,6')."""
    span = record.media_fields()
    return shown_moment(record.path, span["video_start"], span["video_end"])


def export_dataset(settings: Settings, dataset: str, folder: Path, dtype: str | None = None,
                   rows_per_file: int = ROWS_PER_FILE, progress: bool = True) -> int:
    """Write the dataset into `folder`; the number of rows written."""
    if (folder / VECTORS_FOLDER).is_dir() and any((folder / VECTORS_FOLDER).iterdir()):
        raise ClipSearchError(f"{folder} already holds embeddings; export into an empty folder")
    catalog = Catalog.in_folder(settings.indexes_dir, readonly=True)
    try:
        record = catalog.dataset(dataset)
        if record is None:
            known = ", ".join(d.name for d in catalog.datasets()) or "none"
            raise NotFoundError(f"no dataset {dataset!r} in {settings.indexes_dir}; known: {known}")
        partitions = catalog.partitions(dataset)
        stores = [(p, read_index(settings.indexes_dir / p.index_file, p.index_sha256)) for p in partitions]
        stored = np.float16 if any(index_type_of(index) == "fp16" for _, index in stores) else np.float32
        # A picture's regions (--regions) are not exported: clip-retrieval's format has one row per image.
        rows = {p.name: {r.id: r for r in catalog.images(dataset, p.name) if not r.region} for p in partitions}
        writers = PartWriters(folder, sum(map(len, rows.values())), record.model.dim,
                              np.dtype(dtype).type if dtype else stored, rows_per_file)
        for partition, index in tqdm(stores, desc=f"exporting {dataset}", unit="partition", disable=not progress):
            ids, vectors = vectors_of(index)
            held = rows[partition.name]
            order = np.array([n for n in np.argsort(ids) if int(ids[n]) in held], np.int64)
            images = [held[int(i)] for i in ids[order]]
            spans = [r.media_fields() for r in images]  # a scene's start and end; None for a picture
            writers.add(vectors[order], pa.table({PATH_COLUMN: [exported_path(r) for r in images],
                                                  "id": pa.array(ids[order], pa.int64()),
                                                  "partition": [r.partition for r in images],
                                                  "class_name": [r.class_name for r in images],
                                                  "video_start": pa.array([s["video_start"] for s in spans],
                                                                          pa.float64()),
                                                  "video_end": pa.array([s["video_end"] for s in spans],
                                                                        pa.float64())}))
        return writers.written
    finally:
        catalog.close()


def make_parser() -> argparse.ArgumentParser:
    parser = new_parser(__doc__)
    parser.add_argument("dataset_name", help="the dataset to export")
    parser.add_argument("folder", type=Path, help="where to write img_emb/ and metadata/")
    parser.add_argument("--dtype", choices=("float16", "float32"), help="vector type (default: as stored)")
    parser.add_argument("--rows-per-file", type=int, default=ROWS_PER_FILE, help="rows per part file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_settings_arguments(parser, ["workspace"])
    return parser


def export(args: argparse.Namespace) -> None:
    if args.rows_per_file < 1:
        raise ClipSearchError("--rows-per-file must be at least 1")
    count = export_dataset(settings_from_args(args), args.dataset_name, args.folder, args.dtype, args.rows_per_file,
                           progress=not args.no_progress)
    print(f"exported {count} vectors of {args.dataset_name!r} to {args.folder}")


def main(argv: list[str] | None = None) -> None:
    run("export", make_parser(), export, argv)


if __name__ == "__main__":
    main()
