"""Figures of caption scores: images with their captions, and the images x captions heat map."""
from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lib.captions.scores import ScoredPairs  # noqa: E402
from lib.data.images import open_image  # noqa: E402

LABEL_CHARS = 32
MAX_LABELS = 40


def shorten(text: str, limit: int = LABEL_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def draw_grid(scored: ScoredPairs, images_dir: Path, path: Path, limit: int = 48, columns: int = 6) -> None:
    """Each image with its caption and score, at most `limit` of them (a note says how many are left out)."""
    shown = scored.valid[:limit]
    rows = max(1, -(-len(shown) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 2.4, rows * 2.9 + 0.4), squeeze=False,
                                layout="constrained")
    table = scored.table
    for ax in axes.flat:
        ax.axis("off")
    for ax, row in zip(axes.flat, shown):
        ax.imshow(open_image(images_dir / table.rows[row][table.image_column]))
        caption = textwrap.shorten(table.rows[row][table.caption_column], 90, placeholder="…")
        ax.set_title("\n".join(textwrap.wrap(caption, 26)[:3]), fontsize=8)
        ax.text(0.5, -0.06, f"score {scored.similarity(row):.3f}", transform=ax.transAxes, ha="center", va="top",
                fontsize=8, fontweight="bold")
    note = f"{len(shown)} of {len(scored.valid)} scored pairs" + (
        f"; {len(scored.valid) - len(shown)} more in output.csv" if len(scored.valid) > len(shown) else "")
    figure.suptitle(f"Images with their captions ({note})", fontsize=11)
    figure.savefig(path, dpi=110, pil_kwargs={"quality": 90})
    plt.close(figure)


def _ticks(count: int) -> np.ndarray:
    """Positions that get a label: all of them up to MAX_LABELS, else evenly thinned."""
    return np.arange(count) if count <= MAX_LABELS else np.linspace(0, count - 1, MAX_LABELS).round().astype(int)


def draw_matrix(scored: ScoredPairs, path: Path, limit: int = 200) -> None:
    """The heat map of images x captions, diagonal (each image with its own caption) outlined."""
    size = min(limit, len(scored.valid))
    matrix = scored.matrix[:size, :size]
    table = scored.table
    rows = scored.valid[:size]
    side = min(16.0, 4.0 + size * 0.28)
    figure, ax = plt.subplots(figsize=(side + 2, side))
    image = ax.imshow(matrix, cmap="viridis", aspect="auto")
    figure.colorbar(image, ax=ax, fraction=0.04, label="cosine similarity")
    ticks = _ticks(size)
    ax.set_xticks(ticks, [shorten(table.rows[rows[i]][table.caption_column]) for i in ticks], rotation=90,
                  fontsize=7)
    ax.set_yticks(ticks, [shorten(Path(table.rows[rows[i]][table.image_column]).name) for i in ticks], fontsize=7)
    ax.scatter(np.arange(size), np.arange(size), marker="s", s=max(4.0, 900.0 / max(size, 1)), facecolors="none",
               edgecolors="white", linewidths=1.2, label="own caption")
    ax.legend(loc="upper right", fontsize=7, framealpha=0.6)
    ax.set_xlabel("captions")
    ax.set_ylabel("images")
    cut = f" (first {size} of {len(scored.valid)})" if len(scored.valid) > size else ""
    ax.set_title(f"Image x caption similarity{cut}")
    figure.tight_layout()
    figure.savefig(path, dpi=110, pil_kwargs={"quality": 90})
    plt.close(figure)
