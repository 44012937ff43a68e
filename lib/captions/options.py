"""The options of a scoring run that are not settings: where it reads and writes, and how much it shows."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ScoreOptions:
    """What a run reads and writes, beside the settings (model, batch size, decode workers)."""

    images_dir: Path
    out_dir: Path
    image_embeddings: Path | None = None  # a clip-retrieval embeddings folder holding the image vectors
    chunk_rows: int = 10_000
    outliers: int = 1000
    cut: float = 3.0
    suggest: int = 0
    max_grid: int = 48
    max_matrix: int = 30
    progress: bool = True
    videos: bool = False  # score rows whose image is a video (its frame at the row's '#t=' moment, or its first)
