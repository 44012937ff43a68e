"""Build the image index set of a dataset: scan, compare with the catalog, encode what changed, write.

The pipeline is read -> preprocess (DataLoader worker processes) -> encode (batched, main process)
-> write one partition at a time (index file staged, catalog transaction, atomic rename).
A partition is the unit of work: an interrupted build keeps every partition it finished.
"""
from __future__ import annotations

import hashlib
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from lib.catalog import Catalog, DatasetRecord, ImageRecord, PartitionRecord, SkippedFile
from lib.datasets import ImageFile, image_extensions, scan_dataset
from lib.errors import UnreadableImageError
from lib.hparams import Settings
from lib.images import DEFAULT_MAX_PIXELS, open_image
from lib.index_store import (IndexFileError, build_index, build_lock, effective_index_type, image_index_name, publish,
                             read_index, settle, stage_index, vectors_of)
from lib.model import ClipEncoder
from lib.preprocess import ClipTransform

log = logging.getLogger(__name__)

CATALOG_NAME = "catalog.sqlite"


@dataclass
class BuildReport:
    """What a build did; `summary()` is the line the CLI prints at the end."""

    dataset: str
    layout: str = ""
    added: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0
    encoded: int = 0
    partitions_written: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    report_file: Path | None = None

    def summary(self) -> str:
        rate = self.encoded / self.seconds if self.seconds else 0.0
        return (f"{self.dataset} ({self.layout}): {self.added} added, {self.changed} changed, {self.removed} removed, "
                f"{self.unchanged} unchanged, {len(self.skipped)} skipped; {self.encoded} images encoded into "
                f"{self.partitions_written} partition(s) in {self.seconds:.1f} s ({rate:.1f} images/s)")


class EncodeInputs(Dataset):
    """Reads, hashes, decodes and preprocesses one file per item, in a DataLoader worker."""

    def __init__(self, root: Path, files: list[ImageFile], transform: ClipTransform, max_pixels: int) -> None:
        self.root, self.files, self.transform, self.max_pixels = root, files, transform, max_pixels
        self.extensions = image_extensions()

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item: dict[str, Any] = {"i": i, "pixels": None, "error": None, "size": (0, 0), "sha256": ""}
        path = self.root / self.files[i].path
        if path.suffix.lower() not in self.extensions:
            item["error"] = f"not an image file type ({path.suffix or 'no extension'})"
            return item
        try:
            data = path.read_bytes()
            image = open_image(data, self.max_pixels)
        except UnreadableImageError as err:
            item["error"] = str(err)
            return item
        except OSError as err:
            item["error"] = f"cannot read file: {err.strerror}"
            return item
        # A tensor, not an array: DataLoader hands tensors back through shared memory instead of a pipe.
        pixels = torch.from_numpy(self.transform(image))
        item.update(pixels=pixels, size=image.size, sha256=hashlib.sha256(data).hexdigest())
        return item


def as_list(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return batch


class ImageIndexBuilder:
    """Brings the index set of one dataset up to date with its folder."""

    def __init__(self, settings: Settings, encoder: ClipEncoder, progress: bool = True,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.settings = settings
        self.encoder = encoder
        self.progress = progress
        self.max_pixels = max_pixels
        self.dataset = settings.dataset_name
        self.root = settings.resolve(settings.dataset_path)
        self.folder = settings.indexes_dir
        self.catalog = Catalog(self.folder / CATALOG_NAME)
        self.report = BuildReport(self.dataset)
        self.files_by_path: dict[str, ImageFile] = {}

    def index_path(self, partition: str) -> Path:
        return self.folder / image_index_name(self.dataset, partition, self.encoder.dim)

    def run(self, rebuild: bool = False) -> BuildReport:
        started = time.perf_counter()
        with build_lock(self.folder, self.dataset):
            self._check_model(rebuild)
            todo, removed = self._plan()
            self._encode_and_write(todo, removed)
        self.report.seconds = time.perf_counter() - started
        self.report.report_file = self._write_report()
        return self.report

    def _check_model(self, rebuild: bool) -> None:
        record = self.catalog.dataset(self.dataset)
        if record is None:
            return
        if rebuild:
            self._drop(record)
            return
        self.encoder.identity.check_same(record.model, f"dataset {self.dataset!r}")
        if record.root.resolve() != self.root.resolve():
            log.warning("dataset %r was built from %s; now reading %s", self.dataset, record.root, self.root)

    def _drop(self, record: DatasetRecord) -> None:
        for partition in self.catalog.partitions(self.dataset):
            (self.folder / partition.index_file).unlink(missing_ok=True)
        self.catalog.drop_dataset(self.dataset)
        log.info("dropped dataset %r (built with %s) to rebuild it", self.dataset, record.model.spec)

    def _broken_partitions(self) -> set[str]:
        """Partitions whose index file is missing or is not the recorded one: they are re-encoded whole."""
        broken = set()
        for partition in self.catalog.partitions(self.dataset):
            path = self.folder / partition.index_file
            settle(path, partition.index_sha256, discard=True)
            try:
                read_index(path, partition.index_sha256, mmap=True)
            except IndexFileError as err:
                log.warning("%s", err)
                broken.add(partition.name)
        return broken

    def _plan(self) -> tuple[list[ImageFile], dict[str, list[int]]]:
        """Files to encode (new, changed, in a broken partition) and catalog ids to remove, per partition."""
        known = {record.path: record for record in self.catalog.images(self.dataset)}
        layout, files = scan_dataset(self.root, self.settings.layout, self.settings.partition_size,
                                     {path: record.partition for path, record in known.items()})
        self.report.layout = layout
        broken = self._broken_partitions()
        skipped_before = self.catalog.skipped(self.dataset)
        todo, removed = [], defaultdict(list)
        present = set()
        for file in files:
            present.add(file.path)
            old = known.get(file.path)
            same = old is not None and (old.bytes, old.mtime_ns, old.partition) == (file.bytes, file.mtime_ns,
                                                                                   file.partition)
            if same and old.partition not in broken:
                self.report.unchanged += 1
                continue
            was_skipped = skipped_before.get(file.path)
            if old is None and was_skipped and (was_skipped.bytes, was_skipped.mtime_ns) == (file.bytes, file.mtime_ns):
                self.report.skipped[file.path] = was_skipped.reason
                continue
            if old is not None:
                removed[old.partition].append(old.id)
                self.report.changed += not same
            else:
                self.report.added += 1
            todo.append(file)
        for path, old in known.items():
            if path not in present:
                removed[old.partition].append(old.id)
                self.report.removed += 1
        self.files_by_path = {f.path: f for f in files}
        with self.catalog.transaction() as db:
            self.catalog.put_dataset(db, DatasetRecord(self.dataset, self.root, layout, self.settings.index_type,
                                                       self.encoder.identity))
        return sorted(todo, key=lambda f: (f.partition, f.path)), removed

    def _loader(self, todo: list[ImageFile]) -> DataLoader:
        inputs = EncodeInputs(self.root, todo, self.encoder.transform, self.max_pixels)
        workers = self.settings.num_workers
        return DataLoader(inputs, batch_size=self.settings.batch_size, num_workers=workers, collate_fn=as_list,
                          prefetch_factor=4 if workers else None)

    def _encode_and_write(self, todo: list[ImageFile], removed: dict[str, list[int]]) -> None:
        remaining = defaultdict(int)
        for file in todo:
            remaining[file.partition] += 1
        done: dict[str, list[tuple[ImageFile, dict, np.ndarray]]] = defaultdict(list)
        bar = tqdm(total=len(todo), desc=f"encoding {self.dataset}", unit="img", disable=not self.progress)
        for batch in self._loader(todo) if todo else []:
            good = [item for item in batch if item["pixels"] is not None]
            vectors = self.encoder.encode_pixels(torch.stack([item["pixels"] for item in good])) if good else []
            for item, vector in zip(good, vectors):
                done[todo[item["i"]].partition].append((todo[item["i"]], item, vector))
            for item in batch:
                file = todo[item["i"]]
                if item["error"]:
                    self.report.skipped[file.path] = item["error"]
                remaining[file.partition] -= 1
                if remaining[file.partition] == 0:
                    self._write_partition(file.partition, done.pop(file.partition, []), removed.pop(file.partition, []))
            self.report.encoded += len(good)
            bar.update(len(batch))
        bar.close()
        for partition, ids in removed.items():
            self._write_partition(partition, [], ids)
        self._save_skips()

    def _write_partition(self, partition: str, encoded: list[tuple[ImageFile, dict, np.ndarray]],
                         removed_ids: list[int]) -> None:
        """Old vectors minus removed plus new, staged to disk, then the catalog commit, then the rename."""
        path = self.index_path(partition)
        old = {p.name: p for p in self.catalog.partitions(self.dataset)}.get(partition)
        ids, vectors = np.zeros(0, np.int64), np.zeros((0, self.encoder.dim), np.float32)
        if old is not None:
            try:
                ids, vectors = vectors_of(read_index(path, old.index_sha256, mmap=False))
            except IndexFileError:
                pass  # a broken partition: every file of it is in `encoded`
            keep = ~np.isin(ids, np.asarray(removed_ids, dtype=np.int64))
            ids, vectors = ids[keep], vectors[keep]
        with self.catalog.transaction() as db:
            new_ids = self.catalog.next_ids(db, len(encoded))
        records = [ImageRecord(new_id, self.dataset, partition, file.path, file.class_name, item["size"][0],
                               item["size"][1], file.bytes, file.mtime_ns, item["sha256"])
                   for new_id, (file, item, _) in zip(new_ids, encoded)]
        if encoded:
            ids = np.concatenate([ids, np.asarray(new_ids, dtype=np.int64)])
            vectors = np.concatenate([vectors, np.stack([vector for _, _, vector in encoded])])
        self._commit(partition, path, ids, vectors, removed_ids, records)

    def _commit(self, partition: str, path: Path, ids: np.ndarray, vectors: np.ndarray, removed_ids: list[int],
                records: list[ImageRecord]) -> None:
        if len(ids) == 0:
            with self.catalog.transaction() as db:
                self.catalog.apply_partition(db, PartitionRecord(self.dataset, partition, path.name, "", 0),
                                             removed_ids, records)
            path.unlink(missing_ok=True)
            return
        index_type = effective_index_type(self.settings.index_type, len(ids))
        staged, sha = stage_index(build_index(vectors, ids, index_type), path)
        with self.catalog.transaction() as db:
            self.catalog.apply_partition(db, PartitionRecord(self.dataset, partition, path.name, sha, len(ids)),
                                         removed_ids, records)
        publish(staged)
        self.report.partitions_written += 1
        log.debug("wrote %s: %d vectors (%s)", path.name, len(ids), index_type)

    def _save_skips(self) -> None:
        files = self.files_by_path
        skips = {path: SkippedFile(path, files[path].bytes, files[path].mtime_ns, reason)
                 for path, reason in self.report.skipped.items() if path in files}
        with self.catalog.transaction() as db:
            self.catalog.set_skipped(db, self.dataset, skips)

    def _write_report(self) -> Path:
        """Skipped files with their reasons, one per line, next to the build logs."""
        path = self.settings.workspace / "logs" / f"build_image_{self.dataset}.report.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = ["path\treason"] + [f"{p}\t{r}" for p, r in sorted(self.report.skipped.items())]
        path.write_text("\n".join(lines) + "\n")
        return path


def build_image_index(settings: Settings, encoder: ClipEncoder, rebuild: bool = False,
                      progress: bool = True) -> BuildReport:
    """Bring the index set of `settings.dataset_name` up to date; see ImageIndexBuilder."""
    return ImageIndexBuilder(settings, encoder, progress).run(rebuild)
