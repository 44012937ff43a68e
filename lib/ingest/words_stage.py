"""The build's OCR stage: which images are read, by which pool, and how what they hold reaches the catalog.

Reading is switched by the `ocr` setting (--ocr / --no-ocr): on, off, or auto, which does what the
dataset's last build did (off for a new dataset; see the README for why). Incremental as the rest of the
build: an image is read once, when it has no row in `image_words` (lib/store/catalog_words.py); a changed
file is a new row of `images`, so it is read again; `--ocr` on an existing dataset reads what lacks text.
Results are committed in small transactions as they come, so an interrupted build keeps what it read.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from tqdm import tqdm

from lib.ingest.report import BuildReport
from lib.model.ocr_reader import OcrOptions, choose_engine
from lib.settings import Settings
from lib.store.catalog import Catalog, ImageRecord
from lib.store.records import ImageWords

log = logging.getLogger(__name__)


class OcrPool(Protocol):
    def __len__(self) -> int: ...
    @property
    def wants_more(self) -> bool: ...
    def feed(self, records: Iterable[ImageRecord]) -> None: ...
    def ready(self) -> list[ImageWords]: ...
    def finish(self) -> Iterable[list[ImageWords]]: ...
    def close(self) -> None: ...


def reads_words(settings: Settings, catalog: Catalog, dataset: str) -> bool:
    """Whether this build reads text: the setting, or for 'auto' what the dataset's last build did."""
    if settings.ocr != "auto":
        return settings.ocr == "on"
    return bool(catalog.reads_words(dataset))


def remember_choice(settings: Settings, catalog: Catalog, dataset: str) -> None:
    """An explicit --ocr or --no-ocr becomes what later builds of the dataset do by default."""
    if settings.ocr != "auto":
        with catalog.transaction() as db:
            catalog.set_reads_words(db, dataset, settings.ocr == "on")


def ocr_options(settings: Settings, threads: int) -> OcrOptions:
    return OcrOptions(engine=choose_engine(settings.ocr_engine), threads=threads, time_limit_s=settings.ocr_time_limit)


def make_pool(settings: Settings, root: Path) -> OcrPool:
    """The local pool of reader processes sharing this machine's cores as their threads, or OCR actors (one
    thread each) on the Ray cluster the build encodes on."""
    if settings.engine == "ray":
        from lib.ingest.ray_ocr import RayOcrPool

        return RayOcrPool(settings, root, ocr_options(settings, threads=1))  # an actor per CPU
    from lib.ingest.ocr_pool import LocalOcrPool

    workers = max(1, settings.ocr_workers)
    return LocalOcrPool(root, ocr_options(settings, max(1, (os.cpu_count() or 1) // workers)), workers)


class WordsStage:
    """Feeds a build's committed images to an OCR pool and commits what it reads."""

    def __init__(self, catalog: Catalog, dataset: str, pool: OcrPool, report: BuildReport,
                 progress: bool = True) -> None:
        self.catalog, self.dataset, self.pool, self.report, self.progress = catalog, dataset, pool, report, progress
        self.pending: list[str] = []  # partitions whose unread images are still to be fed

    def start(self) -> None:
        """The images an earlier build left unread (or indexed before --ocr) go first, a partition at a time as
        the pool asks for more."""
        self.pending = [partition.name for partition in self.catalog.partitions(self.dataset)]
        self._refill()

    def committed(self, partition: str) -> None:
        """A partition is committed: its new images are read, and what is read by now is stored."""
        if partition in self.pending:
            self.pending.remove(partition)
        self.pool.feed(self.catalog.images_unread(self.dataset, partition))
        self._store(self.pool.ready())
        self._refill()

    def _refill(self) -> None:
        while self.pending and self.pool.wants_more:
            self.pool.feed(self.catalog.images_unread(self.dataset, self.pending.pop(0)))

    def finish(self) -> None:
        """Read everything still to read and store it; the report gets the counts and the images without text."""
        self._refill()
        total = self.catalog.unread_count(self.dataset)
        bar = tqdm(total=total, desc=f"reading text in {self.dataset}", unit="img",
                   disable=not self.progress or not total)
        try:
            while len(self.pool):
                for batch in self.pool.finish():
                    self._store(batch)
                    bar.update(len(batch))
                    self._refill()
        finally:
            bar.close()
            self.pool.close()

    def _store(self, results: list[ImageWords]) -> None:
        if not results:
            return
        with self.catalog.transaction() as db:
            self.report.words_read += self.catalog.put_words(db, self.dataset, results)
        self.report.words_found += sum(1 for r in results if r.boxes)
        failed = [r for r in results if r.problem]
        if failed:
            paths = self.catalog.images_by_id(r.id for r in failed)
            for r in failed:
                if (record := paths.get(r.id)) is not None:
                    self.report.unread[record.path] = r.problem
