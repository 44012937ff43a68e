"""Import embeddings computed elsewhere as a dataset: `build_image_index.py NAME --from-embeddings DIR`.

The folder is clip-retrieval's (lib/data/embeddings_folder.py): `img_emb/img_emb_N.npy` (float16 or
float32, normalised here) beside `metadata/metadata_N.parquet` with an `image_path` column. Rows go into
partitions by a class column (`--class-column`) or in chunks of `embeddings_partition_size` rows, and each
partition is committed like a built one, so imports are incremental, resumable and atomic the same way:
a row whose path and part file (size, mtime) are unchanged keeps its id; a partition with no changed
row is not rewritten; rows without a path, repeated paths and unusable vectors are skipped and reported.

Memory: the listing of every row (partition code, part number and path: ~50 bytes a row) plus one
partition's vectors; a dataset large enough for IVF is trained on a sample of the folder first, so the
partitions are written straight into their IVF form.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from lib.data.datasets import safe_name
from lib.data.embeddings_folder import (
    PATH_COLUMN,
    EmbeddingsPart,
    embeddings_dim,
    embeddings_parts,
    part_metadata,
    part_vectors,
)
from lib.errors import ClipSearchError, IndexMismatchError
from lib.ingest.image_index import ImageIndexBuilder
from lib.ingest.ivf_train import sample_rows
from lib.model.encoder import ClipEncoder
from lib.settings import Settings
from lib.store.catalog import DatasetRecord, ImageRecord, SkippedFile
from lib.store.names import folder_of
from lib.store.records import EMBEDDINGS_LAYOUT

log = logging.getLogger(__name__)

UNIT_TOLERANCE = 1e-4  # float16 vectors normalised before rounding are within ~2e-5 of unit length at 512-d


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """The float32 rows L2-normalised in place; rows of unit length already are kept bit for bit, so that an
    export gives back exactly what was imported. Zero or non-finite rows are left as they are."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    np.divide(vectors, norms, out=vectors, where=(np.abs(norms - 1) > UNIT_TOLERANCE) & (norms > 0))
    return vectors


@dataclass
class Listing:
    """Every row of the folder: its part, its row in the part, its partition code, its path, and why it is skipped."""

    parts: list[EmbeddingsPart]
    starts: np.ndarray  # first global row of each part
    stamps: list[tuple[int, int]]  # (bytes, mtime_ns) of each part's vectors file
    codes: np.ndarray  # partition of each row, -1 when skipped
    paths: pa.ChunkedArray
    names: list[str]  # partition name of each code
    classes: list[str]  # class name of each code
    skipped: dict[int, str]  # row -> reason

    def where(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        part = np.searchsorted(self.starts, rows, side="right") - 1
        return part, rows - self.starts[part]

    def vectors(self, rows: np.ndarray, dim: int) -> np.ndarray:
        """The rows' vectors (sorted global row numbers) as float32; one part's file mapped at a time."""
        part, local = self.where(rows)
        out = np.empty((len(rows), dim), np.float32)
        for number in np.unique(part):
            mapped = part_vectors(self.parts[number])
            out[part == number] = mapped[local[part == number]]
            del mapped
        return out


class EmbeddingsImporter(ImageIndexBuilder):
    """Brings a dataset up to date with an embeddings folder (one model: the one whose dimension they have)."""

    def __init__(self, settings: Settings, encoder: ClipEncoder, source: Path, images_root: Path | None = None,
                 class_column: str | None = None, progress: bool = True) -> None:
        super().__init__(settings, encoder, progress)
        self.source, self.class_column = source, class_column
        self.root = images_root.resolve() if images_root else None
        self.report.action, self.report.layout = "imported", EMBEDDINGS_LAYOUT
        dim = embeddings_dim(source)
        if dim != encoder.dim:
            raise IndexMismatchError(f"the embeddings in {source} have {dim} dimensions but model "
                                     f"{encoder.identity.spec!r} makes {encoder.dim}-d vectors; give the model "
                                     "that computed them (--model)")

    def _check_source(self, record: DatasetRecord) -> None:
        if record.layout != EMBEDDINGS_LAYOUT:
            raise ClipSearchError(f"dataset {self.dataset!r} was built from images; import into another name, or "
                                  "pass --rebuild to replace it with the embeddings")

    def _update(self) -> None:
        listing = self._list()
        with self.catalog.transaction() as db:
            self.catalog.put_dataset(db, DatasetRecord(self.dataset, self.root, EMBEDDINGS_LAYOUT,
                                                       self.settings.index_type, self.encoder.identity))
        self._train_first(listing)
        order = np.argsort(listing.codes, kind="stable")
        bounds = np.searchsorted(listing.codes[order], np.arange(len(listing.names) + 1))
        bar = tqdm(total=int((listing.codes >= 0).sum()), desc=f"importing {self.dataset}", unit="row",
                   disable=not self.progress)
        for code, _name in sorted(enumerate(listing.names), key=lambda item: item[1]):
            self._import_partition(listing, code, order[bounds[code]:bounds[code + 1]])
            bar.update(bounds[code + 1] - bounds[code])
        bar.close()
        for gone in set(p.name for p in self.catalog.partitions(self.dataset)) - set(listing.names):
            removed = [r.id for r in self.catalog.images(self.dataset, gone)]
            self.report.removed += len(removed)
            self._commit(gone, np.zeros(0, np.int64), np.zeros((0, self.encoder.dim), np.float32), removed, [])
        self._save_skips(self._skips(listing))

    def _list(self) -> Listing:
        parts = embeddings_parts(self.source)
        columns = (PATH_COLUMN,) + ((self.class_column,) if self.class_column else ())
        tables = [part_metadata(part, columns, self.encoder.dim) for part in parts]
        starts = np.cumsum([0] + [len(t) for t in tables])
        stamps = [(p.vectors.stat().st_size, p.vectors.stat().st_mtime_ns) for p in parts]
        paths = pa.chunked_array([t.column(PATH_COLUMN).cast(pa.string()) for t in tables], type=pa.string())
        if self.class_column:
            codes, names, classes = _class_codes([t.column(self.class_column) for t in tables])
        else:
            codes = (np.arange(starts[-1]) // self.settings.embeddings_partition_size).astype(np.int64)
            names = [f"chunk{c:05d}" for c in range(int(codes.max()) + 1 if len(codes) else 0)]
            classes = [""] * len(names)
        listing = Listing(parts, starts, stamps, codes, paths, names, classes, _bad_paths(paths))
        listing.codes[list(listing.skipped)] = -1
        return listing

    def _train_first(self, listing: Listing) -> None:
        """A dataset that will be large enough gets its quantizer from a sample of the folder before any
        partition is written, so partitions go straight into IVF form (no float32 copy to convert)."""
        valid = np.flatnonzero(listing.codes >= 0)
        total = len(valid) + sum(p.count for p in self.catalog.partitions(self.dataset))
        layout = self.ivf.layout(total)
        if self.ivf.trained is not None or layout is None:
            return
        sample = unit_rows(listing.vectors(valid[sample_rows(len(valid), layout.sample)], self.encoder.dim))
        usable = np.isfinite(sample).all(axis=1) & (np.abs(sample).sum(axis=1) > 0)
        self.ivf.train(sample if usable.all() else sample[usable], total, layout)

    def _import_partition(self, listing: Listing, code: int, rows: np.ndarray) -> None:
        name, class_name = listing.names[code], listing.classes[code]
        known = {r.path: r for r in self.catalog.images(self.dataset, name)}
        paths = listing.paths.take(pa.array(rows)).to_pylist()
        part, _ = listing.where(rows)
        stamps = [listing.stamps[p] for p in part]
        same = [(r := known.get(path)) is not None and (r.bytes, r.mtime_ns) == stamp
                for path, stamp in zip(paths, stamps, strict=True)]
        if all(same) and len(paths) == len(known):
            self.report.unchanged += len(paths)
            return
        vectors = listing.vectors(rows, self.encoder.dim)
        norms = np.linalg.norm(vectors, axis=1)
        usable = np.isfinite(norms) & (norms > 0)
        for row in rows[~usable]:
            listing.skipped[int(row)] = "its vector is zero or not finite"
        keep = {path for path, ok, unchanged in zip(paths, usable, same, strict=True) if ok and unchanged}
        removed = [r.id for path, r in known.items() if path not in keep]
        fresh = [i for i, (ok, unchanged) in enumerate(zip(usable, same, strict=True)) if ok and not unchanged]
        with self.catalog.transaction() as db:
            new_ids = self.catalog.next_ids(db, len(fresh))
        ids = np.array([known[p].id if p in keep else 0 for p in paths], dtype=np.int64)
        ids[fresh] = new_ids
        records = [ImageRecord(new_id, self.dataset, name, paths[i], class_name, 0, 0, stamps[i][0], stamps[i][1], "",
                               folder=folder_of(paths[i])) for new_id, i in zip(new_ids, fresh, strict=True)]
        present = set(paths)
        self.report.added += sum(paths[i] not in known for i in fresh)
        self.report.changed += sum(paths[i] in known for i in fresh)
        self.report.removed += sum(path not in present for path in known)
        self.report.unchanged += len(keep)
        self.report.encoded += len(fresh)
        self._commit(name, ids[usable], unit_rows(vectors if usable.all() else vectors[usable]), removed, records)

    def _skips(self, listing: Listing) -> dict[str, SkippedFile]:
        skips = {}
        for row, reason in sorted(listing.skipped.items()):
            path = listing.paths[row].as_py() or f"<row {row}>"
            path = f"{path} (row {row})" if reason.startswith("repeats") else path
            part, _ = listing.where(np.array([row]))
            skips[path] = SkippedFile(path, *listing.stamps[int(part[0])], reason)
            self.report.skipped[path] = reason
        return skips


def _class_codes(columns: list[pa.ChunkedArray]) -> tuple[np.ndarray, list[str], list[str]]:
    """A partition code for every row from its class value; partition names are file-safe and distinct."""
    classes: dict[str, int] = {}
    codes = []
    for column in columns:
        encoded = pc.dictionary_encode(column.cast(pa.string())).combine_chunks()
        local = [classes.setdefault("" if v is None else v, len(classes)) for v in encoded.dictionary.to_pylist()]
        lookup = np.array(local + [classes.setdefault("", len(classes))], dtype=np.int64)
        codes.append(lookup[encoded.indices.fill_null(len(local)).to_numpy()])
    names: list[str] = []
    taken: set[str] = set()
    for value in classes:
        name = safe_name(value)
        name = name if name not in taken else f"{name}-{len(taken)}"
        taken.add(name)
        names.append(name)
    return np.concatenate(codes) if codes else np.zeros(0, np.int64), names, list(classes)


def _bad_paths(paths: pa.ChunkedArray) -> dict[int, str]:
    """Rows without a usable path, or repeating an earlier row's path: row -> reason."""
    bad = {int(row): "no image_path" for row in np.flatnonzero(
        pc.fill_null(pc.equal(pc.utf8_trim_whitespace(paths), ""), True).to_numpy(zero_copy_only=False))}
    if len(pc.unique(paths)) < len(paths):
        counts = pc.value_counts(paths)
        repeated = counts.field("values").filter(pc.greater(counts.field("counts"), 1))
        rows = np.flatnonzero(pc.is_in(paths, repeated).to_numpy(zero_copy_only=False))
        seen: set[str] = set()
        for row in rows:
            path = paths[int(row)].as_py()
            if path in seen and int(row) not in bad:
                bad[int(row)] = f"repeats the image_path {path!r} of an earlier row"
            seen.add(path)
    return bad


def import_embeddings(settings: Settings, encoder: ClipEncoder, source: Path, images_root: Path | None = None,
                      class_column: str | None = None, rebuild: bool = False, progress: bool = True,
                      retrain: bool = False):
    """Bring `settings.dataset_name` up to date with the embeddings folder `source`; see EmbeddingsImporter."""
    return EmbeddingsImporter(settings, encoder, source, images_root, class_column, progress).run(rebuild, retrain)
