"""The OCR stage of a Ray build: the images of the build read by a pool of OCR actors on the cluster.

The Ray engine has used every CPU of the cluster to encode by the time the index is committed, so the images
fed to this pool are read after that, in their own Ray Data pipeline: each `OcrActor` loads RapidOCR once
and reads its files from the dataset's folder at the same path as the decode tasks do (storage every node
sees), through open_indexed, so a link out of the dataset or a file changed since it was indexed is not read.
Results stream back to the driver, which commits them as the local pool's are (lib/ingest/words_stage.py);
a lost cluster stops the stage with a ClusterError, and what was committed is kept for the next build.
"""
from __future__ import annotations

import logging
import pickle
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from lib.ingest.ray_cluster import RayConnection
from lib.model.ocr_reader import OcrOptions, OcrReader
from lib.settings import Settings
from lib.store.catalog_words import boxes_from_json, boxes_json
from lib.store.records import ImageRecord, ImageWords

log = logging.getLogger(__name__)

Columns = dict[str, np.ndarray]
BATCH = 8


class OcrActor:
    """One RapidOCR pipeline per actor; each call reads a batch of indexed images (records pickled in a column)."""

    def __init__(self, root: str, options: OcrOptions) -> None:
        self.root, self.reader = Path(root), OcrReader(options)

    def __call__(self, batch: Columns) -> Columns:
        read = [self.reader.read_indexed(self.root, pickle.loads(item)) for item in batch["record"]]
        return {"id": np.asarray([r.id for r in read], np.int64),
                "boxes": np.asarray([boxes_json(r.boxes) for r in read], dtype=object),
                "problem": np.asarray([r.problem for r in read], dtype=object)}


class RayOcrPool:
    """The same interface as lib/ingest/ocr_pool.LocalOcrPool; everything is read in `finish()`."""

    def __init__(self, settings: Settings, root: Path, options: OcrOptions, lost_after_s: float = 15.0) -> None:
        self.root, self.options = root, options
        self.connection = RayConnection(settings.ray_address, lost_after_s)
        self.records: dict[int, ImageRecord] = {}

    def __len__(self) -> int:
        return len(self.records)

    @property
    def wants_more(self) -> bool:
        """Always: one Ray Data pipeline reads every image fed before `finish()`."""
        return True

    def feed(self, records: Iterable[ImageRecord]) -> None:
        for record in records:
            self.records.setdefault(record.id, record)

    def ready(self) -> list[ImageWords]:
        return []

    def finish(self) -> Iterator[list[ImageWords]]:
        if not self.records:
            return
        import pyarrow

        with self.connection as ray:
            cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
            log.info("reading text of %d images with up to %d OCR actors on %s", len(self.records), cpus,
                     self.connection.where)
            table = pyarrow.table({"record": [pickle.dumps(r) for r in self.records.values()]})
            items = ray.data.from_arrow([table.slice(start, BATCH * 4) for start in range(0, len(table), BATCH * 4)])
            read = items.map_batches(OcrActor, batch_size=BATCH, num_cpus=1,
                                     fn_constructor_kwargs={"root": str(self.root), "options": self.options},
                                     compute=ray.data.ActorPoolStrategy(min_size=1, max_size=cpus))
            seen: set[int] = set()
            for batch in self.connection.stream(read.iter_batches(batch_size=None, batch_format="numpy")):
                results = [ImageWords(i, boxes_from_json(str(b)), str(p))
                           for i, b, p in zip(batch["id"].tolist(), batch["boxes"], batch["problem"], strict=True)
                           if i not in seen]
                for result in results:
                    seen.add(result.id)
                    self.records.pop(result.id, None)
                yield results

    def close(self) -> None:
        self.records.clear()
