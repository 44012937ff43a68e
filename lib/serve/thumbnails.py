"""Thumbnails of indexed images (of a scene of a video: its frame), made once and kept in the cache folder (or,
when it cannot be written, made for each request and served from memory)."""
from __future__ import annotations

import io
import logging
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from PIL import Image

from lib.data.video_frames import indexed_picture
from lib.store.catalog import ImageRecord
from lib.store.files import write_atomic

log = logging.getLogger(__name__)

_cache_failing: set[Path] = set()  # cache folders that could not be written, so that the log says it once


def _cached(data: bytes, path: Path) -> Path | io.BytesIO:
    """The file written into the cache, or the bytes themselves when the cache cannot be written (a full disk)."""
    try:
        written = write_atomic(data, path)
    except OSError as err:
        if path.parent not in _cache_failing:
            _cache_failing.add(path.parent)
            log.warning("cannot write thumbnails into %s (%s); serving them from memory until it can", path.parent,
                        err)
        return io.BytesIO(data)
    if path.parent in _cache_failing:
        _cache_failing.discard(path.parent)
        log.info("thumbnails are cached in %s again", path.parent)
    return written


def thumbnail(source: BinaryIO, record: ImageRecord, size: int, cache_dir: Path) -> Path | io.BytesIO:
    """A JPEG no larger than size x size of the open file `source` (a scene's frame, for a scene of a video);
    keyed by id and content hash, so a changed image gets a new one."""
    path = cache_dir / f"{record.id}-{record.sha256[:12]}-{size}.jpg"
    if path.is_file():
        return path
    image = indexed_picture(source, record)
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return _cached(buffer.getvalue(), path)


NOT_FOR_BROWSERS = {".heic", ".heif"}  # most browsers cannot show them (Safari alone does)


def needs_browser_copy(record: ImageRecord) -> bool:
    """Whether the picture must be made for browsers: a HEIC (most cannot show it), or a scene's frame."""
    return record.media == "video" or PurePosixPath(record.path).suffix.lower() in NOT_FOR_BROWSERS


def browser_copy(source: BinaryIO, record: ImageRecord, cache_dir: Path) -> Path | io.BytesIO:
    """A full-size JPEG of a file most browsers cannot show (HEIC), or of a scene's frame, made once and cached."""
    return thumbnail(source, record, max(record.width, record.height, 1), cache_dir)
