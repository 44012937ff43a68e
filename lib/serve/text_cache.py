"""Text queries' embeddings kept in memory, per process, the least recently used dropped first: paging through
a query, reloading its page and the cut-off's repeated searches then cost no encoder time.

functools.lru_cache does the keeping; a thread-local flag, set only when the cache calls through to the
encoder, tells each lookup whether it was a hit (lru_cache's own counters are per cache, not per call, and
the Prometheus counters of a multi-process server must be counted where each call happens).
"""
from __future__ import annotations

import functools
import threading
from collections.abc import Callable

import numpy as np

Encode = Callable[[list[str]], np.ndarray]


class TextVectors:
    """The embedding (1, dim) of a text, encoded by `encode` once while it stays among the `size` most recently
    asked; `on_lookup(hit)` hears of every lookup. The arrays given out are read-only: they are shared."""

    def __init__(self, encode: Encode, size: int, on_lookup: Callable[[bool], None] | None = None) -> None:
        self.encode, self.on_lookup = encode, on_lookup
        self._local = threading.local()
        self._cached = functools.lru_cache(maxsize=max(0, size))(self._encoded)

    def _encoded(self, text: str) -> np.ndarray:
        self._local.missed = True
        vector = np.array(self.encode([text]), dtype=np.float32)
        vector.setflags(write=False)
        return vector

    def __call__(self, text: str) -> np.ndarray:
        self._local.missed = False
        vector = self._cached(text)
        if self.on_lookup is not None:
            self.on_lookup(not self._local.missed)
        return vector
