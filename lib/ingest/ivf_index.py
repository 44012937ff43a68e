"""Keep a dataset's IVF layer in step with its partitions: train, encode, retrain or drop it, and tune it.

A builder creates one DatasetIvf under its build lock, commits every partition with its `trained`
quantizer (None: exact partitions only), then calls `finish`. That trains the quantizer when the dataset
has crossed `ivf_min_vectors` (or `--retrain` asks), re-encodes any partition that has no IVF lists yet,
and tunes nprobe when the dataset changed enough. Training and retraining switch every partition in one
catalog transaction (`commit_ivf`), so a build killed at any point leaves a consistent index set.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from lib.errors import IndexFileError
from lib.ingest.ivf_layout import SAMPLE_PER_LIST, IvfLayout, choose_layout, nlist_for
from lib.ingest.ivf_train import pick_rows, sample_rows, train_ivf
from lib.ingest.ivf_tune import tune
from lib.settings import Settings
from lib.store.catalog import Catalog, IvfRecord, PartitionRecord
from lib.store.dataset_index import open_dataset, read_trained
from lib.store.exact_set import ExactSet
from lib.store.files import settle
from lib.store.index_files import (
    PartitionVectors,
    commit_ivf,
    commit_partition,
    drop_ivf,
    index_type_of,
    read_index,
    vectors_of,
)
from lib.store.ivf_files import TrainedIVF, quantizer_name
from lib.store.records import DRIFT

log = logging.getLogger(__name__)

RETUNE_SHARE = 0.02  # re-tune after a build that rewrote at least this share of the vectors


class DatasetIvf:
    """The IVF state of one dataset during a build."""

    def __init__(self, catalog: Catalog, folder: Path, dataset: str, dim: int, settings: Settings) -> None:
        self.catalog, self.folder, self.dataset, self.dim, self.settings = catalog, folder, dataset, dim, settings
        self.record = catalog.ivf(dataset)
        self.trained: TrainedIVF | None = None
        self.written = 0
        self.trained_now = False
        quantizer = folder / quantizer_name(dataset, dim)
        settle(quantizer, self.record.quantizer_sha256 if self.record else "", discard=True)
        if self.record is not None and settings.index_type == "auto":
            try:
                self.trained = read_trained(folder, self.record)
            except IndexFileError as err:
                log.warning("%s; training it again", err)

    def wrote(self, count: int) -> None:
        """A partition of `count` vectors was committed (with `trained`, when there is one)."""
        self.written += count

    def layout(self, total: int) -> IvfLayout | None:
        return choose_layout(total, self.dim, self.settings)

    def train(self, sample: np.ndarray, total: int, layout: IvfLayout) -> None:
        """A new quantizer from `sample`; every partition already committed is re-encoded with it, at once."""
        if not layout.fits:
            log.warning("%d vectors do not fit memory_budget=%s even as %s codes; search will read from disk",
                        total, self.settings.memory_budget, layout.storage)
        self.trained, fit = train_ivf(sample, layout)
        record = IvfRecord(self.dataset, quantizer_name(self.dataset, self.dim), "", layout.storage, layout.nlist,
                           total, fit, exact_below=self.settings.ivf_min_vectors)
        count = commit_ivf(self.catalog, self.folder, self.trained, record, self._stored())
        self.record, self.trained_now = self.catalog.ivf(self.dataset), True
        log.info("dataset %r: %s IVF with %d lists over %d partition(s)", self.dataset, layout.storage, layout.nlist,
                 count)

    def _stored(self, partitions: list[PartitionRecord] | None = None) -> Iterator[PartitionVectors]:
        for partition in self.catalog.partitions(self.dataset) if partitions is None else partitions:
            index = read_index(self.folder / partition.index_file, partition.index_sha256)
            ids, vectors = vectors_of(index)
            yield PartitionVectors(partition, ids, vectors, index_type_of(index) == "fp16")

    def _train_from_stores(self, total: int, layout: IvfLayout) -> None:
        stores = {p.name: read_index(self.folder / p.index_file, p.index_sha256)
                  for p in self.catalog.partitions(self.dataset)}
        _, sample = pick_rows(ExactSet(stores, self.dim).blocks(), sample_rows(total, layout.sample))
        del stores
        self.train(sample, total, layout)

    def finish(self, retrain: bool = False) -> list[str]:
        """Bring the IVF layer in step with the committed partitions; notes for the user (advice to retrain)."""
        total = sum(p.count for p in self.catalog.partitions(self.dataset))
        if self.settings.index_type != "auto" or not total:
            if self.record is not None:
                drop_ivf(self.catalog, self.folder, self.dataset)
                why = f"index_type is {self.settings.index_type}" if total else "it holds no vectors"
                return [f"dropped the IVF layer of {self.dataset!r}: {why}"]
            return []
        layout = self.layout(total)
        if retrain and layout is None and total:  # below the crossover, but asked for
            nlist = nlist_for(total)
            storage = self.record.storage if self.record else "flat"
            layout = IvfLayout(nlist, storage, min(total, SAMPLE_PER_LIST * nlist), True)
        if layout is not None and (self.trained is None or (retrain and not self.trained_now)):
            self._train_from_stores(total, layout)
        if self.record is None or self.trained is None:
            return []
        stale = [p for p in self.catalog.partitions(self.dataset) if not p.ivf_file]
        for partition, ids, vectors, _ in self._stored(stale):
            commit_partition(self.catalog, self.folder, self.dataset, partition.name, ids, vectors, ivf=self.trained)
            self.written += len(ids)
        self._update(total)
        advice = self.record.retrain_advice(total)
        return [f"{self.dataset}: {advice}"] if advice else []

    def _update(self, total: int) -> None:
        """Record the fit of vectors added after the training build, and tune again when the dataset changed
        enough (or this build's vectors fit the quantizer worse)."""
        record, trained = self.record, self.trained
        assert record is not None and trained is not None, "updated only once the layer is trained and recorded"
        if not self.trained_now:
            count = record.recent_count + trained.fit_count
            recent_fit = (record.recent_fit * record.recent_count + trained.fit_sum) / count if count else 0.0
            record = dataclasses.replace(record, recent_fit=recent_fit, recent_count=count)
        drifted = trained.fit_count and trained.fit_sum / trained.fit_count < record.fit - DRIFT
        retune = self.trained_now or drifted or not record.tuned_on or self.written >= RETUNE_SHARE * total
        opened = open_dataset(self.catalog, self.folder, self.dataset, self.dim) if retune else None
        if opened is not None and opened.ivf is not None:
            tuning = tune(opened.ivf, self.settings.target_recall, record.exact_below)
            record = dataclasses.replace(record, **dataclasses.asdict(tuning), tuned_on=total)
        with self.catalog.transaction() as db:
            self.catalog.put_ivf(db, record)
        self.record = record
