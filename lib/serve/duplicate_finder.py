"""Duplicate groups of a loaded dataset: its vectors, its catalog rows and its own index, put together.

`group_dataset` is what find_duplicates.py runs once; `DuplicateFinder` is what the server runs, keeping
the last few answers, because a grouping reads every vector and searches the index once per vector
(seconds at 100,000 images) while the pages of one answer are asked for one after another. A grouping
also opens files: the capture times of images that may be grouped, and the pixels of each pair that may
be near (PixelMatcher), through the same checks as the files the server serves (open_indexed).
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from functools import partial

import numpy as np

from lib.data.aligned_pixels import SIDE, compare, prepared
from lib.data.dataset_files import open_indexed
from lib.data.images import capture_time_ns
from lib.data.video_frames import indexed_picture
from lib.errors import NotFoundError, UnreadableImageError
from lib.serve.duplicates import DuplicateReport, group_duplicates, resolve_thresholds
from lib.serve.index_set import LiveIndexSet
from lib.serve.loaded_dataset import LoadedDataset
from lib.serve.neighbours import NEIGHBOURS, close_pairs, positions_of
from lib.store.catalog import DatasetRecord, ImageRecord
from lib.store.catalog_reader import CatalogReader
from lib.store.dataset_figures import DuplicateThresholds, thresholds_from

log = logging.getLogger(__name__)

CACHED_REPORTS = 4
CACHED_PIXELS = 4096  # prepared pictures kept per grouping (12 KB each): an image is in a few candidate pairs


def group_dataset(dataset: LoadedDataset, catalog: CatalogReader, thresholds: DuplicateThresholds,
                  neighbours: int = NEIGHBOURS, videos: bool = False) -> DuplicateReport:
    """Group every image of the dataset into tiers, searching its index for each image's neighbours; the scenes
    of videos are left out unless `videos` is given (a video's scenes then group with their copies elsewhere,
    and with pictures that show the same)."""
    parts = list(dataset.index.blocks(list(dataset.partitions)))
    ids = np.concatenate([i for i, _ in parts]) if parts else np.zeros(0, np.int64)
    vectors = np.concatenate([v for _, v in parts]) if parts else np.zeros((0, dataset.record.model.dim), np.float32)
    records = {r.id: r for r in catalog.images(dataset.record.name)
               if (videos or r.media != "video") and not r.region}  # a region is part of a picture, not a copy
    present = np.array([int(i) in records for i in ids], bool)  # rows a newer build has dropped are left out
    ids, vectors = ids[present], vectors[present]
    pairs = close_pairs(dataset.search, ids, vectors, min(thresholds.near, thresholds.similar), neighbours)
    same = [positions_of(ids, np.asarray(group, np.int64))
            for group in catalog.same_content(dataset.record.name, videos)]
    same = [group[group >= 0] for group in same if (group >= 0).sum() > 1]
    return group_duplicates(dataset.record.name, [records[int(i)] for i in ids], vectors, same, pairs, thresholds,
                            partial(capture_times, dataset.record), PixelMatcher(dataset.record))


def capture_time(dataset: DatasetRecord, record: ImageRecord) -> int | None:
    """An image's EXIF capture time (ns), read through the same checks as the files the server serves (None for
    a scene of a video: its file has no EXIF)."""
    if dataset.root is None or record.media == "video":
        return None
    try:
        with open_indexed(dataset.root, record, dataset.files_recorded) as file:
            return capture_time_ns(file)
    except NotFoundError:
        return None


def capture_times(dataset: DatasetRecord, records: Sequence[ImageRecord]) -> np.ndarray:
    """Each image's EXIF capture time (ns), its modification time where the file has none or cannot be read."""
    return np.array([capture_time(dataset, r) or r.mtime_ns for r in records], np.int64)


def pixels(dataset: DatasetRecord, record: ImageRecord) -> np.ndarray | None:
    """An image's pixels prepared for lib/data/aligned_pixels.compare, its file read through the same checks as
    the files the server serves; None for a dataset without files (imported embeddings) or a file that is gone,
    changed since it was indexed, or cannot be decoded."""
    if dataset.root is None:
        return None
    try:
        with open_indexed(dataset.root, record, dataset.files_recorded) as file:
            return prepared(indexed_picture(file, record, max_side=SIDE * 2))
    except (NotFoundError, UnreadableImageError) as err:
        log.info("no pixel check for image %d: %s", record.id, err)
        return None


class PixelMatcher:
    """Whether two images of a dataset show the same picture once laid onto each other (aligned_pixels.compare):
    the near tier's last check. A pair with an image whose pixels cannot be read (see `pixels`) is not near.
    Measured on the demo dataset: 0.1 s a pair, both files decoded."""

    def __init__(self, dataset: DatasetRecord) -> None:
        self.dataset = dataset
        self._pixels: OrderedDict[int, np.ndarray | None] = OrderedDict()

    def read(self, record: ImageRecord) -> np.ndarray | None:
        if record.id in self._pixels:
            self._pixels.move_to_end(record.id)
            return self._pixels[record.id]
        found = self._pixels[record.id] = pixels(self.dataset, record)
        while len(self._pixels) > CACHED_PIXELS:
            self._pixels.popitem(last=False)
        return found

    def __call__(self, first: ImageRecord, second: ImageRecord) -> bool:
        a, b = self.read(first), self.read(second)
        return a is not None and b is not None and compare(a, b).same


class DuplicateFinder:
    """Duplicate groups of the datasets of a live index set; safe to share between threads."""

    def __init__(self, indexes: LiveIndexSet, neighbours: int = NEIGHBOURS) -> None:
        self.indexes = indexes
        self.neighbours = neighbours
        self._lock = threading.Lock()
        self._reports: OrderedDict[tuple, tuple[LoadedDataset, DuplicateReport]] = OrderedDict()

    def dataset(self, name: str | None) -> LoadedDataset:
        datasets = self.indexes.current().datasets
        if name is None and len(datasets) == 1:
            return next(iter(datasets.values()))
        if name not in datasets:
            raise NotFoundError(f"unknown dataset {name!r}; known: {', '.join(datasets) or 'none is built'}"
                                if name else f"say which dataset: {', '.join(datasets) or 'none is built'}")
        return datasets[name]

    def thresholds(self, dataset: LoadedDataset, near: float | None = None,
                   similar: float | None = None) -> DuplicateThresholds:
        """The dataset's calibrated thresholds, with the ones given in their place."""
        recorded = thresholds_from(self.indexes.figures(dataset.record.name).get("duplicates"), dataset.record.name,
                                   self.indexes.model)
        return resolve_thresholds(recorded, dataset.record.name, near, similar)

    def report(self, name: str | None, near: float | None = None, similar: float | None = None,
               videos: bool = False) -> DuplicateReport:
        """The grouping of a dataset of the current index set (with its videos' scenes, or without), computed
        once per index set, thresholds and choice."""
        dataset = self.dataset(name)
        thresholds = self.thresholds(dataset, near, similar)
        key = (id(dataset), thresholds.near, thresholds.similar, videos)
        with self._lock:  # one grouping at a time: a second request for the same one waits and reuses it
            if key in self._reports and self._reports[key][0] is dataset:
                self._reports.move_to_end(key)
                return self._reports[key][1]
            catalog = self.indexes.open_catalog()
            try:
                report = group_dataset(dataset, catalog, thresholds, self.neighbours, videos)
            finally:
                catalog.close()
            self._reports[key] = (dataset, report)
            while len(self._reports) > CACHED_REPORTS:
                self._reports.popitem(last=False)
            return report
