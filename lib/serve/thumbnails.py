"""Thumbnails of indexed images, made once and kept in the cache folder."""
from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from lib.data.images import open_image
from lib.store.catalog import ImageRecord
from lib.store.files import write_atomic


def thumbnail(source: Path, record: ImageRecord, size: int, cache_dir: Path) -> Path:
    """A JPEG no larger than size x size; keyed by content hash, so a changed image gets a new one."""
    path = cache_dir / f"{record.id}-{record.sha256[:12]}-{size}.jpg"
    if path.is_file():
        return path
    image = open_image(source)
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return write_atomic(buffer.getvalue(), path)


NOT_FOR_BROWSERS = {".heic", ".heif"}  # most browsers cannot show them (Safari alone does)


def browser_copy(source: Path, record: ImageRecord, cache_dir: Path) -> Path | None:
    """For a file most browsers cannot show (HEIC), a full-size JPEG of it, made once and cached; else None."""
    if source.suffix.lower() not in NOT_FOR_BROWSERS:
        return None
    return thumbnail(source, record, max(record.width, record.height, 1), cache_dir)

