"""Figures of a scoring run: the score histogram, a sample of images with their captions, and the
images x captions heat map of a sample. Legible at any number of rows: each draws a bounded sample,
says so in a note, and lays text out in slots of its own (text too wide for its slot is made smaller)."""
from __future__ import annotations

import textwrap
import warnings
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from PIL import Image  # noqa: E402

DPI = 100
LABEL_CHARS = 32
MAX_LABELS = 40
CELL_WIDTH, IMAGE_SIDE, TEXT_HEIGHT, HEADER = 2.3, 1.8, 0.75, 0.7  # inches, in the grid of images
CAPTION_LINES, CAPTION_CHARS, FONT = 3, 28, 8.0


def shorten(text: str, limit: int = LABEL_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def fit_width(text: Text, width_inches: float) -> None:
    """Shrink the text's font until it is no wider than `width_inches`."""
    figure = text.get_figure()
    assert figure is not None, "the text is placed on a figure"
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]  # Agg's canvas has it; the base does not
    for _ in range(6):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Glyph .* missing from font")
            width = text.get_window_extent(renderer).width / figure.dpi
        if width <= width_inches:
            return
        text.set_fontsize(float(text.get_fontsize()) * width_inches / width * 0.97)


def save(figure: Figure, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Glyph .* missing from font")  # drawn as a box; once per caption is noise
        figure.savefig(path, dpi=DPI, pil_kwargs={"quality": 90})
    plt.close(figure)


def histogram_figure(similarity: np.ndarray, low_cutoff: float, median: float, note: str) -> Figure:
    """The distribution of pair scores, with the median and the low-score cut-off marked."""
    values = similarity[np.isfinite(similarity)]
    figure, ax = plt.subplots(figsize=(8, 4.8), layout="constrained")
    ax.hist(values, bins=int(np.clip(np.sqrt(len(values)), 10, 100)), color="#4c72b0")
    ax.axvline(median, color="#333333", linestyle=":", label=f"median {median:.3f}")
    flagged = int((values <= low_cutoff).sum())
    ax.axvline(low_cutoff, color="#c44e52", linewidth=2,
               label=f"low-score cut-off {low_cutoff:.3f} ({flagged:,} rows at or below)")
    ax.set_xlabel("cosine similarity of image and caption")
    ax.set_ylabel("rows")
    ax.legend(loc="upper left", fontsize=8, framealpha=0.9)
    ax.set_title(f"Pair scores of {len(values):,} rows", fontsize=11)
    fit_width(figure.suptitle(note, fontsize=8, color="#555555"), 7.8)
    return figure


@dataclass
class GridCell:
    """One pair in the grid: its image (None if it cannot be shown), caption and score."""

    image: Image.Image | None
    caption: str
    score: float
    flagged: bool = False


def _caption_lines(caption: str) -> str:
    lines = textwrap.wrap(" ".join(caption.split()), CAPTION_CHARS) or [""]
    if len(lines) > CAPTION_LINES:
        lines = lines[:CAPTION_LINES]
        lines[-1] = lines[-1][: CAPTION_CHARS - 1] + "…"
    return "\n".join(lines)


def _draw_cell(figure: Figure, cell: GridCell, left: float, top: float) -> None:
    """The image, then a fixed slot of CAPTION_LINES lines for the caption, then the score; inches from top-left."""
    width, height = figure.get_size_inches()
    ax = figure.add_axes(((left + (CELL_WIDTH - IMAGE_SIDE) / 2) / width, (height - top - IMAGE_SIDE) / height,
                          IMAGE_SIDE / width, IMAGE_SIDE / height))
    ax.axis("off")
    if cell.image is not None:
        ax.imshow(cell.image)
    else:
        ax.text(0.5, 0.5, "image not available", ha="center", va="center", fontsize=7, color="#777777")
    centre, below = (left + CELL_WIDTH / 2) / width, height - top - IMAGE_SIDE - 0.05
    caption = figure.text(centre, below / height, _caption_lines(cell.caption), ha="center", va="top",
                          fontsize=FONT, linespacing=1.15)
    fit_width(caption, CELL_WIDTH - 0.15)
    score_line = below - CAPTION_LINES * FONT * 1.15 * 1.25 / 72
    figure.text(centre, score_line / height, f"score {cell.score:.3f}" + ("  (outlier)" if cell.flagged else ""),
                ha="center", va="top", fontsize=FONT, fontweight="bold",
                color="#c44e52" if cell.flagged else "black")


def grid_figure(cells: list[GridCell], note: str, columns: int = 6) -> Figure:
    """Images with their captions and scores in a grid; `note` says which rows these are."""
    columns = max(1, min(columns, len(cells)))
    rows = max(1, -(-len(cells) // columns))
    width = max(columns * CELL_WIDTH, 6.5)
    figure = plt.figure(figsize=(width, HEADER + rows * (IMAGE_SIDE + TEXT_HEIGHT)))
    title = figure.text(0.5, 1 - 0.15 / figure.get_size_inches()[1], "\n".join(textwrap.wrap(note, 110)),
                        ha="center", va="top", fontsize=10)
    fit_width(title, width - 0.2)
    offset = (width - columns * CELL_WIDTH) / 2
    for i, cell in enumerate(cells):
        _draw_cell(figure, cell, offset + (i % columns) * CELL_WIDTH, HEADER + (i // columns) * (IMAGE_SIDE +
                                                                                               TEXT_HEIGHT))
    return figure


def _ticks(count: int) -> np.ndarray:
    """Positions that get a label: all of them up to MAX_LABELS, else evenly thinned."""
    return np.arange(count) if count <= MAX_LABELS else np.linspace(0, count - 1, MAX_LABELS).round().astype(int)


def matrix_figure(matrix: np.ndarray, image_labels: list[str], caption_labels: list[str], note: str) -> Figure:
    """The heat map of sampled images x their captions, each image's own caption on the outlined diagonal."""
    size = len(matrix)
    side = float(np.clip(size * 0.17, 3.0, 9.0))  # at least a label's height per row
    figure, ax = plt.subplots(figsize=(side + 4.2, side + 3.6), layout="constrained")
    image = ax.imshow(matrix, cmap="viridis", aspect="auto")
    figure.colorbar(image, ax=ax, fraction=0.04, label="cosine similarity")
    ticks = _ticks(size)
    font = float(np.clip(side / max(len(ticks), 1) * 72 * 0.7, 4.0, 8.0))
    ax.set_xticks(ticks, [shorten(caption_labels[i]) for i in ticks], rotation=90, fontsize=font)
    ax.set_yticks(ticks, [shorten(Path(image_labels[i]).name) for i in ticks], fontsize=font)
    ax.scatter(np.arange(size), np.arange(size), marker="s", s=max(4.0, 900.0 / max(size, 1)), facecolors="none",
               edgecolors="white", linewidths=1.2)
    ax.set_xlabel("captions (each image's own caption on the diagonal, outlined)")
    ax.set_ylabel("images")
    title = ax.set_title("\n".join(textwrap.wrap(f"Image x caption similarity: {note}", 70)), fontsize=10)
    fit_width(title, side + 3.0)
    return figure
