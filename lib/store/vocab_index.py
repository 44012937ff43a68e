"""A vocabulary's index on disk: indexes_text/text_<vocab>_<dim>.index and its JSON metadata beside it.

The metadata holds the entries (ids and labels, in index order), the prompt templates, the model
identity and the SHA-256 of the index file it belongs to, so a reader never pairs the wrong two files.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from lib.errors import ClipSearchError
from lib.store.files import publish, settle, write_staged
from lib.store.identity import ModelIdentity
from lib.store.index_files import build_index, read_index, stage_index


@dataclass(frozen=True)
class VocabEntry:
    """One thing a picture can be classified as: a stable id and the label that is put into prompts."""

    id: str
    label: str


@dataclass(frozen=True)
class TextIndex:
    """A loaded vocabulary: its index, entries in index order, templates and model identity."""

    name: str
    index: faiss.Index
    entries: list[VocabEntry]
    templates: tuple[str, ...]
    model: ModelIdentity


def metadata_path(index_path: Path) -> Path:
    return index_path.with_suffix(".json")


def recorded_model(index_path: Path) -> ModelIdentity | None:
    """The model an existing vocabulary index was built with, or None where there is none yet."""
    path = metadata_path(index_path)
    return ModelIdentity.from_dict(json.loads(path.read_text())["model"]) if path.is_file() else None


def write_text_index(path: Path, name: str, vectors: np.ndarray, entries: Sequence[VocabEntry],
                     templates: Sequence[str], model: ModelIdentity) -> None:
    """Both files staged; the metadata is published first, then the index it names by SHA-256."""
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


def recorded_templates(folder: Path, model: ModelIdentity) -> tuple[str, ...] | None:
    """The prompt templates of the vocabularies built with this model (the first by name), or None."""
    for meta in sorted(folder.glob("text_*.json")) if folder.is_dir() else []:
        try:
            data = json.loads(meta.read_text())
            if ModelIdentity.from_dict(data["model"]).weights_sha256 == model.weights_sha256:
                return tuple(data["templates"])
        except (OSError, KeyError, TypeError, json.JSONDecodeError):
            continue
    return None
