"""The text rows of a dataset's images brought up to date at the end of a build: names, folders, captions.

Every build compares each image's caption in captions.csv and the size and mtime of its .txt sidecar with
what the catalog holds, so a caption that changed is picked up even when no image did; only a changed sidecar
is read again. Rows of images that are gone leave the table (apply_partition drops most of them already).
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from lib.data.datasets import ImageFile
from lib.data.image_text import name_words, read_captions, read_sidecar, sidecar_of
from lib.store.catalog import Catalog, ImageRecord
from lib.store.records import ImageText

log = logging.getLogger(__name__)


def _text(record: ImageRecord, caption: str, sidecar: ImageFile | None, root: Path | None,
          stored: tuple[str, str] | None) -> ImageText | None:
    """The row an image should have, or None when the one stored is it."""
    stamp = f"{sidecar.bytes}:{sidecar.mtime_ns}" if sidecar else ""
    if stored == (caption, stamp):
        return None
    text = read_sidecar(root / sidecar.path) if sidecar and root else ""
    return ImageText(record.id, name_words(record.path.rpartition("/")[2]), name_words(record.folder), caption,
                     text, stamp)


def update_image_text(catalog: Catalog, dataset: str, root: Path | None, files: Mapping[str, ImageFile]) -> int:
    """Write the text rows of the dataset's images that are new or changed; `files` is the build's scan (where
    sidecars are found, with their sizes and mtimes). Returns how many rows were written."""
    captions = read_captions(root) if root else {}
    stored = catalog.image_text_state(dataset)
    records = catalog.images(dataset)
    texts = [text for record in records if (text := _text(record, captions.get(record.path, ""),
                                                          files.get(sidecar_of(record.path)), root,
                                                          stored.get(record.id))) is not None]
    gone = set(stored) - {record.id for record in records}
    with catalog.transaction() as db:
        catalog.drop_image_text(db, gone)
        catalog.put_image_text(db, dataset, texts)
    if texts or gone:
        log.info("text of %d images of %r written, %d removed", len(texts), dataset, len(gone))
    return len(texts)
