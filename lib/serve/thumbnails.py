"""Thumbnails of indexed images, made once and kept in the cache folder."""
from __future__ import annotations

import io
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from PIL import Image

from lib.data.images import open_image
from lib.store.catalog import ImageRecord
from lib.store.files import write_atomic


def thumbnail(source: BinaryIO, record: ImageRecord, size: int, cache_dir: Path) -> Path:
    """A JPEG no larger than size x size of the open file `source`; keyed by content hash, so a changed image
    gets a new one."""
    path = cache_dir / f"{record.id}-{record.sha256[:12]}-{size}.jpg"
    if path.is_file():
        return path
    image = open_image(source)
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return write_atomic(buffer.getvalue(), path)


NOT_FOR_BROWSERS = {".heic", ".heif"}  # most browsers cannot show them (Safari alone does)


def needs_browser_copy(record: ImageRecord) -> bool:
    """Whether most browsers cannot show the file as it is (HEIC)."""
    return PurePosixPath(record.path).suffix.lower() in NOT_FOR_BROWSERS


def browser_copy(source: BinaryIO, record: ImageRecord, cache_dir: Path) -> Path:
    """A full-size JPEG of a file most browsers cannot show (HEIC), made once and cached."""
    return thumbnail(source, record, max(record.width, record.height, 1), cache_dir)
