"""Vocabulary text indexes: prompt-ensembled label embeddings in indexes_text/text_<vocab>_<dim>.index.

Beside each index, text_<vocab>_<dim>.json holds the entries (ids and labels, in index order), the
prompt templates, the model identity and the SHA-256 of the index file it belongs to.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import faiss
import numpy as np
from tqdm import tqdm

from lib.errors import ClipSearchError
from lib.index_store import build_index, build_lock, publish, read_index, settle, stage_index, text_index_name, write_staged
from lib.model import ClipEncoder, ModelIdentity
from lib.vocabulary import VocabEntry, VocabStats

log = logging.getLogger(__name__)

DEFAULT_TEMPLATES = ("a photo of a {}.",)
CHUNK = 1024


@dataclass(frozen=True)
class TextIndex:
    """A loaded vocabulary: its index, entries in index order, templates and model identity."""

    name: str
    index: faiss.Index
    entries: list[VocabEntry]
    templates: tuple[str, ...]
    model: ModelIdentity


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


def read_templates(path: Path | None) -> tuple[str, ...]:
    """Prompt templates, one per line with a {} for the label; none given: CLIP's 'a photo of a {}.'."""
    if path is None:
        return DEFAULT_TEMPLATES
    templates = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    bad = [t for t in templates if t.count("{}") != 1]
    if not templates or bad:
        raise ClipSearchError(f"template file {path}: every line needs exactly one {{}} for the label"
                              + (f" (not: {bad[0]!r})" if bad else " and the file has none"))
    return templates


def embed_labels(encoder: ClipEncoder, labels: Sequence[str], templates: Sequence[str]) -> np.ndarray:
    """Mean of the normalised embeddings of every template filled with the label, normalised again."""
    total = np.zeros((len(labels), encoder.dim), dtype=np.float32)
    for template in templates:
        total += encoder.encode_texts([template.format(label) for label in labels])
    return total / np.linalg.norm(total, axis=1, keepdims=True).clip(1e-12)


def _chunk_cache(cache_dir: Path, encoder: ClipEncoder, templates: Sequence[str], labels: Sequence[str]) -> Path:
    key = hashlib.sha256(json.dumps([encoder.identity.weights_sha256, list(templates), list(labels)]).encode())
    return cache_dir / "text_chunks" / f"{key.hexdigest()[:32]}.npy"


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
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = _npy_bytes(vectors)
        publish(write_staged(buffer, path)[0])
        parts.append(vectors)
        encoded += 1
    return np.concatenate(parts), encoded, cached


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def metadata_path(index_path: Path) -> Path:
    return index_path.with_suffix(".json")


def build_text_index(name: str, entries: Sequence[VocabEntry], stats: VocabStats, encoder: ClipEncoder,
                     folder: Path, cache_dir: Path, templates: Sequence[str] = DEFAULT_TEMPLATES,
                     progress: bool = True, rebuild: bool = False) -> TextBuildReport:
    """Write the index and its metadata: both staged, metadata published first, then the index.

    An existing index of this vocabulary built with another model is replaced only with `rebuild`.
    """
    started = time.perf_counter()
    path = folder / text_index_name(name, encoder.dim)
    with build_lock(folder, f"text-{name}"):
        if metadata_path(path).is_file() and not rebuild:
            existing = ModelIdentity.from_dict(json.loads(metadata_path(path).read_text())["model"])
            encoder.identity.check_same(existing, f"vocabulary {name!r} ({path.name})")
        vectors, encoded, cached = encode_vocabulary(encoder, [e.label for e in entries], templates, cache_dir,
                                                     progress)
        _write(path, vectors, entries, templates, encoder.identity, name)
    return TextBuildReport(name, len(entries), stats, encoded, cached, time.perf_counter() - started, path)


def _write(path: Path, vectors: np.ndarray, entries: Sequence[VocabEntry], templates: Sequence[str],
           model: ModelIdentity, name: str) -> None:
    staged_index, sha = stage_index(build_index(vectors, np.arange(len(entries), dtype=np.int64)), path)
    metadata = {"vocab": name, "index_sha256": sha, "model": model.to_dict(), "templates": list(templates),
                "entries": [{"id": e.id, "label": e.label} for e in entries]}
    staged_meta, _ = write_staged(json.dumps(metadata, ensure_ascii=False).encode(), metadata_path(path))
    publish(staged_meta)
    publish(staged_index)


def load_text_index(path: Path) -> TextIndex:
    """Load a text index with its entries; refuses a pair of files that do not belong together."""
    meta_path = metadata_path(path)
    try:
        metadata = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ClipSearchError(f"text index metadata {meta_path} is missing or damaged ({err}); "
                              "re-run build_text_index.py") from None
    settle(path, metadata["index_sha256"])
    index = read_index(path, metadata["index_sha256"])
    entries = [VocabEntry(e["id"], e["label"]) for e in metadata["entries"]]
    return TextIndex(metadata["vocab"], index, entries, tuple(metadata["templates"]),
                     ModelIdentity.from_dict(metadata["model"]))
