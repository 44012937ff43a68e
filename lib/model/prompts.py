"""Prompts for labels: the templates a label is put into, and the ensemble of their embeddings (CLIP paper, 3.1.4)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lib.errors import ClipSearchError
from lib.model.encoder import ClipEncoder

DEFAULT_TEMPLATES = ("a photo of a {}.",)


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
