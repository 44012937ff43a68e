"""The OCR stage of a local build: a pool of reader processes beside the encoder, at the lowest CPU priority.

The builder feeds it the images of each partition once that partition is committed (and, first, every image
an earlier build left unread), and stores what comes back in its own transactions, so the index is
searchable as soon as its vectors are and a server finds the words as they are committed. The readers run
at nice 19: on a machine whose cores the encoder keeps busy they get what it leaves, so they do not delay
the index (bench.ocr_speed measures the time to searchable with and without OCR).

A reader that dies (a crash in the models, the memory killer) breaks the whole pool: the images it held are
read again one at a time in a new pool, and one that breaks that too is kept without text, with the reason.
A reader past its CPU-time limit gives up on that image alone (lib/model/ocr_reader.cpu_time_limit).
"""
from __future__ import annotations

import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from lib.model.ocr_reader import OcrOptions, OcrReader
from lib.store.records import ImageRecord, ImageWords

log = logging.getLogger(__name__)

QUEUE_LOW = 256
CRASHED = "the OCR reader process died on this image (twice); it is indexed without text"
_reader: OcrReader | None = None


def _start_reader(options: OcrOptions) -> None:
    """In each reader process: the lowest priority, then one pipeline for its life."""
    global _reader
    try:
        os.nice(19)
    except OSError:  # pragma: no cover - a platform without nice: the readers run at normal priority
        pass
    _reader = OcrReader(options)


def _read(root: str, record: ImageRecord) -> ImageWords:
    assert _reader is not None, "the reader process was started by _start_reader"
    return _reader.read_indexed(Path(root), record)


class LocalOcrPool:
    """Reads the words of the images fed to it in `workers` processes; results come back by `ready()` (what is
    done now) and `finish()` (everything, in batches)."""

    def __init__(self, root: Path, options: OcrOptions, workers: int) -> None:
        self.root, self.options, self.workers = str(root), options, max(1, workers)
        self.waiting: deque[ImageRecord] = deque()
        self.solo: deque[ImageRecord] = deque()  # held by a reader that died: read again one at a time
        self.running: dict[Future[ImageWords], ImageRecord] = {}
        self.fed: set[int] = set()  # ids waiting or being read
        self.retried: set[int] = set()
        self.executor: ProcessPoolExecutor | None = None

    def __len__(self) -> int:
        """Images fed and not yet given back."""
        return len(self.waiting) + len(self.solo) + len(self.running)

    @property
    def wants_more(self) -> bool:
        """Whether the queue is short enough to be fed another partition (so that only about one partition's
        records are held, however large the dataset)."""
        return len(self) < QUEUE_LOW

    def feed(self, records: Iterable[ImageRecord]) -> None:
        """More images to read (an image fed and not yet given back is not fed twice)."""
        for record in records:
            if record.id not in self.fed:
                self.fed.add(record.id)
                self.waiting.append(record)
        self._top_up()

    def _pool(self) -> ProcessPoolExecutor:
        if self.executor is None:
            self.executor = ProcessPoolExecutor(self.workers, multiprocessing.get_context("spawn"),
                                                initializer=_start_reader, initargs=(self.options,))
        return self.executor

    def _top_up(self) -> None:
        """Keep each reader busy with two images; one at a time while some are suspected of crashing a reader."""
        if self.solo:
            if not self.running:
                record = self.solo.popleft()
                self.running[self._pool().submit(_read, self.root, record)] = record
            return
        while self.waiting and len(self.running) < 2 * self.workers:
            record = self.waiting.popleft()
            self.running[self._pool().submit(_read, self.root, record)] = record

    def _collect(self, timeout: float | None) -> list[ImageWords]:
        if not self.running:
            self._top_up()
            if not self.running:
                return []
        done, _ = wait(list(self.running), timeout=timeout, return_when=FIRST_COMPLETED)
        results, broken = [], False
        for future in done:
            record = self.running.pop(future)
            try:
                results.append(future.result())
                self.fed.discard(record.id)
            except BrokenProcessPool:
                broken = True
                if record.id in self.retried:
                    log.warning("OCR: image %d broke a reader process again; kept without text", record.id)
                    results.append(ImageWords(record.id, (), CRASHED))
                    self.fed.discard(record.id)
                else:
                    self.retried.add(record.id)
                    self.solo.append(record)
        if broken:
            self._restart()
        self._top_up()
        return results

    def _restart(self) -> None:
        """A reader died: every image still in the broken pool is read again, alone."""
        for future, record in self.running.items():
            future.cancel()
            self.retried.add(record.id)
            self.solo.append(record)
        self.running.clear()
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
        self.executor = None
        log.warning("an OCR reader process died; reading its images again one at a time")

    def ready(self) -> list[ImageWords]:
        """What the readers have finished so far (without waiting)."""
        results: list[ImageWords] = []
        while batch := self._collect(timeout=0):
            results += batch
        return results

    def finish(self, batch: int = 64) -> Iterator[list[ImageWords]]:
        """Everything still to read, in batches of about `batch` results, as they come."""
        pending: list[ImageWords] = []
        while len(self):
            pending += self._collect(timeout=1.0)
            if len(pending) >= batch or (pending and not len(self)):
                yield pending
                pending = []
        if pending:
            yield pending

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)
            self.executor = None
