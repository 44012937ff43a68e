"""The build's OCR stage: which images are read, by which pool, and how what they hold reaches the catalog.

Reading is switched by the `ocr` setting (--ocr / --no-ocr): on, off, or auto, which does what the
dataset's last build did (off for a new dataset; see the README for why). Incremental as the rest of the
build: an image is read once, when it has no row in `image_words` (lib/store/catalog_words.py); a changed
file is a new row of `images`, so it is read again; `--ocr` on an existing dataset reads what lacks text.
Results are committed in small transactions as they come, so an interrupted build keeps what it read.
"""
from __future__ import annotations

import logging
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


def ocr_options(settings: Settings) -> OcrOptions:
    return OcrOptions(engine=choose_engine(settings.ocr_engine), time_limit_s=settings.ocr_time_limit)


def make_pool(settings: Settings, root: Path) -> OcrPool:
    """The local pool of reader processes, or OCR actors on the Ray cluster the build encodes on."""
    if settings.engine == "ray":
        from lib.ingest.ray_ocr import RayOcrPool

        return RayOcrPool(settings, root, ocr_options(settings))
    from lib.ingest.ocr_pool import LocalOcrPool

    return LocalOcrPool(root, ocr_options(settings), settings.ocr_workers)


class WordsStage:
    """Feeds a build's committed images to an OCR pool and commits what it reads."""

    def __init__(self, catalog: Catalog, dataset: str, pool: OcrPool, report: BuildReport,
                 progress: bool = True) -> None:
        self.catalog, self.dataset, self.pool, self.report, self.progress = catalog, dataset, pool, report, progress

    def start(self) -> None:
        """Every image an earlier build left unread (or indexed before --ocr) goes first."""
        self.pool.feed(self.catalog.images_unread(self.dataset))

    def committed(self, partition: str) -> None:
        """A partition is committed: its new images are read, and what is read by now is stored."""
        self.pool.feed(self.catalog.images_unread(self.dataset, partition))
        self._store(self.pool.ready())

    def finish(self) -> None:
        """Read everything still fed and store it; the report gets the counts and the images read without text."""
        bar = tqdm(total=len(self.pool), desc=f"reading text in {self.dataset}", unit="img",
                   disable=not self.progress or not len(self.pool))
        try:
            for batch in self.pool.finish():
                self._store(batch)
                bar.update(len(batch))
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
