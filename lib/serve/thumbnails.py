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
