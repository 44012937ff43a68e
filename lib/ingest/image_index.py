"""Build the image index set of a dataset: scan, plan against the catalog, decode, encode, commit.

An engine (lib/ingest/local_engine.py) decodes and encodes the files the plan says must be encoded
and hands them back in batches; this module, the single writer, commits a partition as soon as all
of its files are back (lib/store/index_files.commit_partition: staged file, catalog transaction,
rename). A partition is the unit of work: an interrupted build keeps every partition it finished.
"""
from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lib.data.datasets import ImageFile, scan_dataset
from lib.data.image_text import caption_files
from lib.errors import ClipSearchError, IndexFileError
from lib.ingest.calibrate import calibrate_build
from lib.ingest.entries import entries_of, vector_count
from lib.ingest.hash_backfill import backfill_missing
from lib.ingest.image_text import update_image_text
from lib.ingest.ivf_index import DatasetIvf
from lib.ingest.local_engine import Engine, make_engine
from lib.ingest.report import BuildReport
from lib.ingest.store_copy import StoreWriter, store_writer
from lib.ingest.words_stage import WordsStage, make_pool, reads_words, remember_choice
from lib.model.decode import EncodedFile
from lib.model.encoder import ClipEncoder
from lib.settings import Settings
from lib.store.catalog import Catalog, DatasetRecord, ImageRecord, SkippedFile
from lib.store.catalog_copy import keep_good_copy, repair_catalog
from lib.store.files import build_lock, room_on_disk
from lib.store.index_files import commit_partition, read_index, settle_partition, vectors_of
from lib.store.ivf_files import quantizer_name
from lib.store.records import EMBEDDINGS_LAYOUT

log = logging.getLogger(__name__)


class ImageIndexBuilder:
    """Brings the index set of one dataset up to date with its folder."""

    def __init__(self, settings: Settings, encoder: ClipEncoder, progress: bool = True,
                 engine: Engine | None = None) -> None:
        self.settings, self.encoder, self.progress = settings, encoder, progress
        self.engine = engine or make_engine(settings, encoder)
        self.dataset = settings.dataset_name
        self.root: Path | None = settings.resolve(settings.dataset_path)  # None: embeddings without images
        self.folder = settings.indexes_dir
        self.report = BuildReport(self.dataset)
        with self.room_on_disk():
            repair_catalog(self.folder, rebuild=True)  # a damaged catalog: its good copy, or a new one
            self.catalog = Catalog.in_folder(self.folder)
        self.files_by_path: dict[str, ImageFile] = {}
        self._ivf: DatasetIvf | None = None
        self.words: WordsStage | None = None  # the OCR stage, when this build reads text
        self.store: StoreWriter | None = None  # the store database's copy, when `store` is one
        self.regions = False  # whether this build splits pictures into regions (_plan decides)

    @property
    def folder_root(self) -> Path:
        """The image folder this builder reads (an embeddings import may have none)."""
        assert self.root is not None, "a build from images has an image folder"
        return self.root

    @property
    def ivf(self) -> DatasetIvf:
        """The dataset's IVF layer, opened by `run` under the build lock."""
        assert self._ivf is not None, "the IVF layer is opened by run(), under the build lock"
        return self._ivf

    def run(self, rebuild: bool = False, retrain: bool = False) -> BuildReport:
        """Bring the dataset up to date; `retrain` trains its IVF quantizer again even if it need not."""
        started = time.perf_counter()
        with self.room_on_disk(), build_lock(self.folder, self.dataset):
            self._check_model(rebuild)
            self._ivf = DatasetIvf(self.catalog, self.folder, self.dataset, self.encoder.dim, self.settings)
            try:
                self.store = store_writer(self.settings, self.dataset, rebuild, self.encoder.identity)
                self._read_words_too()
                self._update()
                self._finish(retrain)
            finally:
                if self.words is not None:
                    self.words.pool.close()
                if self.store is not None:
                    self.store.close()
        self.report.seconds = time.perf_counter() - started
        self.report.warm_up_s = getattr(self.engine, "warm_up_s", 0.0)
        with self.room_on_disk():
            self.report.write_skipped(self.settings.workspace / "logs" / f"build_image_{self.dataset}.report.tsv")
        return self.report

    def _read_words_too(self) -> None:  # the OCR stage, when this build reads text (lib/ingest/words_stage.py)
        if self.root is not None and reads_words(self.settings, self.catalog, self.dataset):
            self.words = WordsStage(self.catalog, self.dataset, make_pool(self.settings, self.root), self.report,
                                    self.progress)
            self.words.start()

    def _finish(self, retrain: bool) -> None:
        """After the vectors: what unchanged rows lack, the text rows, the IVF layer, then the words in pictures."""
        record = self.catalog.dataset(self.dataset)
        if self.root is not None and record is not None:  # imported embeddings may have no pixels to read
            self.report.hashed, self.report.dated = backfill_missing(
                self.catalog, self.dataset, self.root, self.settings.num_workers, record.files_recorded)
        self.report.texts = update_image_text(self.catalog, self.dataset, self.root, self.files_by_path)
        self.report.notes += self.ivf.finish(retrain)
        keep_good_copy(self.folder)
        if self.store is not None:  # the store database catches up before words are read
            self.report.notes.append(self.store.finish().line(self.dataset))
        remember_choice(self.settings, self.catalog, self.dataset)
        if self.words is not None:
            self.words.finish()
            keep_good_copy(self.folder)
            if self.store is not None:  # the words read, in the database's rows too
                self.store.rows_changed()

    def room_on_disk(self) -> AbstractContextManager[None]:
        """A full disk as one line (lib/store/files.room_on_disk): committed partitions are kept."""
        return room_on_disk(self.folder, lambda: f"{self.report.partitions_written} partitions committed")

    def _check_model(self, rebuild: bool) -> None:
        record = self.catalog.dataset(self.dataset)
        if record is None:
            return
        if rebuild:
            self._drop(record)
            return
        self.encoder.identity.check_same(record.model, f"dataset {self.dataset!r}")
        self._check_source(record)

    def _check_source(self, record: DatasetRecord) -> None:
        if record.layout == EMBEDDINGS_LAYOUT:
            raise ClipSearchError(f"dataset {self.dataset!r} holds embeddings imported with --from-embeddings; "
                                  "import again the same way, or pass --rebuild to build it from images instead")
        if record.root is not None and record.root.resolve() != self.folder_root.resolve():
            log.warning("dataset %r was built from %s; now reading %s", self.dataset, record.root, self.root)

    def _drop(self, record: DatasetRecord) -> None:
        for partition in self.catalog.partitions(self.dataset):
            (self.folder / partition.index_file).unlink(missing_ok=True)
            (self.folder / partition.index_file).with_suffix(".ivf").unlink(missing_ok=True)
        (self.folder / quantizer_name(self.dataset, record.model.dim)).unlink(missing_ok=True)
        self.catalog.drop_dataset(self.dataset)
        log.info("dropped dataset %r (built with %s) to rebuild it", self.dataset, record.model.spec)

    def _broken_partitions(self) -> set[str]:
        """Partitions whose index file is missing or is not the recorded one: they are re-encoded whole."""
        broken = set()
        for partition in self.catalog.partitions(self.dataset):
            path = self.folder / partition.index_file
            settle_partition(self.folder, partition, discard=True)
            try:
                read_index(path, partition.index_sha256, mmap=True)
            except IndexFileError as err:
                log.warning("%s", err)
                broken.add(partition.name)
        return broken

    def _update(self) -> None:  # an embeddings import has its own
        self._encode_and_write(*self._plan())

    def _plan(self) -> tuple[list[ImageFile], dict[str, list[int]]]:
        """Files to encode (new, changed, in a broken partition) and catalog ids to remove, per partition."""
        rows: dict[str, list[ImageRecord]] = defaultdict(list)  # a video has a row per scene
        for record in self.catalog.images(self.dataset):
            rows[record.path].append(record)
        known = {path: held[0] for path, held in rows.items()}
        resplit = self._regions_choice()
        layout, files, refused = scan_dataset(self.folder_root, self.settings.layout, self.settings.partition_size,
                                              {path: record.partition for path, record in known.items()},
                                              self.settings.follow_links)
        self.report.layout = layout
        self.report.skipped.update(refused)
        broken = self._broken_partitions()
        skipped_before = self.catalog.skipped(self.dataset)
        todo: list[ImageFile] = []
        removed: dict[str, list[int]] = defaultdict(list)
        present = set()
        captions = caption_files({file.path for file in files})
        for file in (file for file in files if file.path not in captions):
            present.add(file.path)
            old = known.get(file.path)
            same = old is not None and (old.bytes, old.mtime_ns, old.partition, old.link_target) == (
                file.bytes, file.mtime_ns, file.partition, file.target)
            if same and old is not None and old.partition not in broken and not (resplit and old.media == "image"):
                self.report.unchanged += 1
                continue
            was_skipped = skipped_before.get(file.path)
            if old is None and was_skipped and (was_skipped.bytes, was_skipped.mtime_ns) == (file.bytes, file.mtime_ns):
                self.report.skipped[file.path] = was_skipped.reason
                continue
            if old is not None:
                removed[old.partition] += [record.id for record in rows[file.path]]
                self.report.changed += not same
            else:
                self.report.added += 1
            todo.append(file)
        for path, old in known.items():
            if path not in present:
                removed[old.partition] += [record.id for record in rows[path]]
                self.report.removed += 1
        self.files_by_path = {f.path: f for f in files}
        with self.catalog.transaction() as db:
            self.catalog.put_dataset(db, DatasetRecord(self.dataset, self.root, layout, self.settings.index_type,
                                                       self.encoder.identity, self.regions))
        return sorted(todo, key=lambda f: (f.partition, f.path)), removed

    def _regions_choice(self) -> bool:
        """Whether this build splits pictures (the setting, or for 'auto' what the dataset's last build did), and
        whether that changed, so that every picture is encoded again (split, or its regions removed)."""
        record = self.catalog.dataset(self.dataset)
        before = record is not None and record.regions
        self.regions = self.settings.regions == "on" or (self.settings.regions == "auto" and before)
        if record is not None and before != self.regions:
            log.info("dataset %r: %s, so its pictures are encoded again", self.dataset,
                     "splitting pictures into regions" if self.regions else "no longer splitting pictures")
        return record is not None and before != self.regions

    def _encode_and_write(self, todo: list[ImageFile], removed: dict[str, list[int]]) -> None:
        remaining = Counter(file.partition for file in todo)
        done: dict[str, list[EncodedFile]] = defaultdict(list)
        bar = tqdm(total=len(todo), desc=f"encoding {self.dataset}", unit="img", disable=not self.progress)
        for batch in self.engine.encode(self.folder_root, todo, self.regions):
            for item in batch:
                file = todo[item.i]
                if item.error:
                    self.report.skipped[file.path] = item.error
                else:
                    done[file.partition].append(item)
                    self.report.encoded += 1
                    self.report.videos += item.scenes is not None
                    self.report.scenes += len(item.scenes or ())
                    self.report.split += bool(item.regions)
                    self.report.regions += len(item.regions or ())
                remaining[file.partition] -= 1
                if remaining[file.partition] == 0:
                    self._write_partition(file.partition, todo, done.pop(file.partition, []),
                                          removed.pop(file.partition, []))
            bar.update(len(batch))
        bar.close()
        for partition, ids in removed.items():
            self._write_partition(partition, todo, [], ids)
        self._save_skips()

    def _write_partition(self, partition: str, todo: list[ImageFile], encoded: list[EncodedFile],
                         removed_ids: list[int]) -> None:
        """Old vectors minus removed plus new, committed as one partition."""
        old = {p.name: p for p in self.catalog.partitions(self.dataset)}.get(partition)
        ids, vectors = np.zeros(0, np.int64), np.zeros((0, self.encoder.dim), np.float32)
        if old is not None:
            try:
                ids, vectors = vectors_of(read_index(self.folder / old.index_file, old.index_sha256, mmap=False))
            except IndexFileError:
                pass  # a broken partition: every file of it is in `encoded`
            keep = ~np.isin(ids, np.asarray(removed_ids, dtype=np.int64))
            ids, vectors = ids[keep], vectors[keep]
        with self.catalog.transaction() as db:
            new_ids = self.catalog.next_ids(db, sum(map(vector_count, encoded)))
        records: list[ImageRecord] = []
        for item in encoded:
            rows, new_vectors = entries_of(item, todo[item.i], new_ids[len(records):], self.dataset, partition)
            records += rows
            vectors = np.concatenate([vectors, new_vectors])
        ids = np.concatenate([ids, np.asarray(new_ids, dtype=np.int64)])
        self._commit(partition, ids, vectors, removed_ids, records)

    def _commit(self, partition: str, ids: np.ndarray, vectors: np.ndarray, removed_ids: list[int],
                records: list[ImageRecord]) -> None:
        """One partition committed, encoded with the dataset's IVF quantizer when it has one."""
        self.report.partitions_written += commit_partition(
            self.catalog, self.folder, self.dataset, partition, ids, vectors, removed_ids, records,
            self.settings.index_type, self.ivf.trained)
        self.ivf.wrote(len(ids))
        for follower in (self.words, self.store):
            if follower is not None:
                follower.committed(partition)

    def _save_skips(self, skips: dict[str, SkippedFile] | None = None) -> None:
        files = self.files_by_path
        if skips is None:
            skips = {path: SkippedFile(path, files[path].bytes, files[path].mtime_ns, reason)
                     for path, reason in self.report.skipped.items() if path in files}
        with self.catalog.transaction() as db:
            self.catalog.set_skipped(db, self.dataset, skips)


def build_image_index(settings: Settings, encoder: ClipEncoder, rebuild: bool = False, progress: bool = True,
                      retrain: bool = False, calibrate: bool = True) -> BuildReport:
    """Bring the index set of `settings.dataset_name` up to date (see ImageIndexBuilder), then, with `calibrate`,
    its duplicate thresholds (calibrate_build; the CLI calls that itself once it has printed the summary)."""
    report = ImageIndexBuilder(settings, encoder, progress).run(rebuild, retrain)
    if calibrate:
        calibrate_build(settings, encoder, report)
    return report
