"""Perceptual signatures for rows indexed before the catalog kept them: read, hashed, stored, never re-encoded.

A build hashes every file it encodes (lib/model/decode.py); this pass gives the same to the unchanged
files of a dataset built by an older version, so that its near-duplicate tier works after the next build.
Files are read in DataLoader workers like the build's, through the server's own opener (open_indexed: a
link may not lead out of the dataset, and the file must still be the one indexed); one that cannot be read
keeps an empty signature (its pairs can reach the similar tier, never the near one) and is tried again on
the next build.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from torch.utils.data import DataLoader, Dataset

from lib.data.dataset_files import open_indexed
from lib.data.images import decode_image
from lib.data.perceptual import SIGNATURE_BYTES, WORK_SIDE, signature
from lib.errors import NotFoundError, UnreadableImageError
from lib.store.catalog import Catalog, ImageRecord

log = logging.getLogger(__name__)

BATCH = 256  # rows hashed between two commits


class HashFiles(Dataset):
    def __init__(self, root: Path, records: Sequence[ImageRecord]) -> None:
        self.root, self.records = root, records

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[int, bytes]:
        record = self.records[i]
        try:
            with open_indexed(self.root, record) as file:
                image, _ = decode_image(file, min_side=WORK_SIDE)
        except (NotFoundError, UnreadableImageError, OSError) as err:
            log.warning("no perceptual hash for %s: %s", record.path, err)
            return record.id, b""
        return record.id, signature(image)


def _pairs(batch: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    return batch


def hash_missing(catalog: Catalog, dataset: str, root: Path, num_workers: int) -> int:
    """Hash the dataset's rows that have no signature (or one of another format); returns how many got one."""
    missing = [r for r in catalog.images(dataset) if len(r.perceptual_hash) != SIGNATURE_BYTES]
    if not missing:
        return 0
    log.info("hashing %d images of %r indexed before perceptual hashes (no re-encoding)", len(missing), dataset)
    loader = DataLoader(HashFiles(root, missing), batch_size=BATCH, num_workers=num_workers, collate_fn=_pairs)
    hashed = 0
    for batch in loader:
        found = {image_id: value for image_id, value in batch if value}
        with catalog.transaction() as db:
            catalog.set_perceptual_hashes(db, found)
        hashed += len(found)
    return hashed
