"""Per-image facts for rows indexed before the catalog kept them: read, stored, never re-encoded.

A build hashes every file it encodes and reads its EXIF header (lib/model/decode.py); this pass gives the
same to the unchanged files of a dataset built by an older version, so that its near-duplicate tier and its
date filters work after the next build. A row without a perceptual signature is decoded (the capture facts
come from the same open file); one that has it and lacks only capture facts has its header read, nothing
decoded. Files are read in DataLoader workers like the build's, through the server's own opener (open_indexed:
a link may not lead out of the dataset, and the file must still be the one indexed); one that cannot be read
keeps what it lacks (a pair without a signature can reach the similar tier, never the near one; an image
without capture facts passes no date filter) and is tried again on the next build. Datasets of imported
embeddings record no file of their own (lib/store/records.DatasetRecord.files_recorded), so they get no
capture facts: their rows keep captured_from ''.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from torch.utils.data import DataLoader, Dataset

from lib.data.dataset_files import open_indexed
from lib.data.images import decode_image, read_exif_facts
from lib.data.perceptual import SIGNATURE_BYTES, WORK_SIDE, signature
from lib.errors import NotFoundError, UnreadableImageError
from lib.store.catalog import Catalog, ImageRecord
from lib.store.records import CaptureFacts

log = logging.getLogger(__name__)

BATCH = 256  # rows read between two commits


class Backfill(NamedTuple):
    hashed: int  # rows given a perceptual signature
    dated: int  # rows given capture facts


class Filled(NamedTuple):
    id: int
    signature: bytes  # b"": none made (not needed, or the file could not be read)
    facts: CaptureFacts | None


def unhashed(record: ImageRecord) -> bool:
    return len(record.perceptual_hash) != SIGNATURE_BYTES


class BackfillFiles(Dataset):
    def __init__(self, root: Path, records: Sequence[ImageRecord]) -> None:
        self.root, self.records = root, records

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> Filled:
        record = self.records[i]
        try:
            with open_indexed(self.root, record) as file:
                if not unhashed(record):
                    facts = read_exif_facts(file)
                    return Filled(record.id, b"", facts.captured(record.mtime_ns) if facts else None)
                image, _, exif = decode_image(file, min_side=WORK_SIDE)
        except (NotFoundError, UnreadableImageError, OSError) as err:
            log.warning("no perceptual hash or capture facts for %s: %s", record.path, err)
            return Filled(record.id, b"", None)
        return Filled(record.id, signature(image), exif.captured(record.mtime_ns))


def _items(batch: list[Filled]) -> list[Filled]:
    return batch


def backfill_missing(catalog: Catalog, dataset: str, root: Path, num_workers: int,
                     files_recorded: bool = True) -> Backfill:
    """Give the dataset's rows what they lack: a signature (or one of another format) and, when the dataset's
    rows are its files' (`files_recorded`), capture facts; returns how many rows got each."""
    missing = [r for r in catalog.images(dataset)  # a scene's row is complete when written (a video decodes whole)
               if r.scene < 0 and (unhashed(r) or (files_recorded and not r.captured_from))]
    if not missing:
        return Backfill(0, 0)
    log.info("reading %d images of %r indexed before perceptual hashes or capture facts (no re-encoding)",
             len(missing), dataset)
    loader = DataLoader(BackfillFiles(root, missing), batch_size=BATCH, num_workers=num_workers, collate_fn=_items)
    hashed = dated = 0
    for batch in loader:
        hashes = {item.id: item.signature for item in batch if item.signature}
        facts = {item.id: item.facts for item in batch if item.facts and files_recorded}
        with catalog.transaction() as db:
            catalog.set_perceptual_hashes(db, hashes)
            catalog.set_capture_facts(db, facts)
        hashed, dated = hashed + len(hashes), dated + len(facts)
    return Backfill(hashed, dated)
