"""Build a vocabulary's text index: prompt-ensembled label embeddings, encoded a chunk at a time."""
from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lib.data.vocabulary import VocabStats
from lib.model.encoder import ClipEncoder
from lib.model.prompts import DEFAULT_TEMPLATES, embed_labels
from lib.store.files import build_lock, write_atomic
from lib.store.index_files import text_index_name
from lib.store.vocab_index import VocabEntry, recorded_model, write_text_index

log = logging.getLogger(__name__)

CHUNK = 1024


@dataclass
class TextBuildReport:
    vocab: str
    entries: int
    stats: VocabStats
    chunks_encoded: int
    chunks_cached: int
    seconds: float
    index_file: Path

    def summary(self) -> str:
        return (f"{self.vocab}: {self.entries} entries ({self.stats.blank} blank and {self.stats.duplicates} "
                f"duplicate lines dropped); {self.chunks_encoded} chunk(s) encoded, {self.chunks_cached} reused, "
                f"in {self.seconds:.1f} s -> {self.index_file}")


def _chunk_cache(cache_dir: Path, encoder: ClipEncoder, templates: Sequence[str], labels: Sequence[str]) -> Path:
    key = hashlib.sha256(json.dumps([encoder.identity.weights_sha256, list(templates), list(labels)]).encode())
    return cache_dir / "text_chunks" / f"{key.hexdigest()[:32]}.npy"


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def encode_vocabulary(encoder: ClipEncoder, labels: Sequence[str], templates: Sequence[str], cache_dir: Path,
                      progress: bool = True) -> tuple[np.ndarray, int, int]:
    """Embed labels a chunk at a time; finished chunks are cached, so a re-run or a resume reuses them."""
    parts, encoded, cached = [], 0, 0
    for start in tqdm(range(0, len(labels), CHUNK), desc="encoding vocabulary", unit="chunk", disable=not progress):
        chunk = labels[start:start + CHUNK]
        path = _chunk_cache(cache_dir, encoder, templates, chunk)
        if path.is_file():
            parts.append(np.load(path))
            cached += 1
            continue
        vectors = embed_labels(encoder, chunk, templates)
        write_atomic(_npy_bytes(vectors), path)
        parts.append(vectors)
        encoded += 1
    return np.concatenate(parts), encoded, cached


def build_text_index(name: str, entries: Sequence[VocabEntry], stats: VocabStats, encoder: ClipEncoder,
                     folder: Path, cache_dir: Path, templates: Sequence[str] = DEFAULT_TEMPLATES,
                     progress: bool = True, rebuild: bool = False) -> TextBuildReport:
    """Write the index and its metadata; an index of this vocabulary built with another model is
    replaced only with `rebuild`."""
    started = time.perf_counter()
    path = folder / text_index_name(name, encoder.dim)
    with build_lock(folder, f"text-{name}"):
        existing = None if rebuild else recorded_model(path)
        if existing is not None:
            encoder.identity.check_same(existing, f"vocabulary {name!r} ({path.name})")
        vectors, encoded, cached = encode_vocabulary(encoder, [e.label for e in entries], templates, cache_dir,
                                                     progress)
        write_text_index(path, name, vectors, entries, templates, encoder.identity)
    return TextBuildReport(name, len(entries), stats, encoded, cached, time.perf_counter() - started, path)
