"""Give memory back to the system after a large request.

glibc keeps freed memory in its per-thread arenas, so a worker that once decoded a 20 MB upload or
encoded 256 captions stays that large. `malloc_trim(0)` returns the free pages; measured on this
project's machines (docs/benchmarks.md) it is what brings a worker's RSS back near its baseline (1.06x),
where MALLOC_ARENA_MAX=2 alone (set by scripts/api.sh) left 4.8x. It costs about 0.1 ms when there
is nothing to return and up to ~100 ms after a burst, so it runs only after requests with a large body,
once the answer is sent (setting `trim_after_kb`). Elsewhere than glibc it does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable

from flask import Flask, Response, request

log = logging.getLogger(__name__)


def _malloc_trim() -> Callable[[], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0)


def install_trim(app: Flask, threshold: int) -> None:
    """After a request whose body was at least `threshold` bytes (> 0), trim the heap once the answer is out."""
    trim = _malloc_trim() if threshold > 0 else None
    if trim is None:
        log.info("no malloc_trim after large requests (not glibc, or trim_after_kb = 0)")
        return

    def after(response: Response) -> Response:
        if (request.content_length or 0) >= threshold:
            response.call_on_close(trim)
        return response

    app.after_request(after)
