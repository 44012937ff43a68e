"""What the figures and the report show of a run: bounded samples of its rows, drawn by figures.py."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from lib.captions.encode import EncodedPairs
from lib.captions.figures import GridCell, grid_figure, histogram_figure, matrix_figure, save
from lib.captions.options import ScoreOptions
from lib.captions.outputs import BestOther, Original, added_values
from lib.captions.report import FigureFile, OutlierEntry, thumbnail_uri
from lib.captions.scores import Outliers, Pairs, RowScores
from lib.data.images import open_image
from lib.errors import UnreadableImageError


def load_image(images_dir: Path, name: str) -> Image.Image | None:
    try:
        return open_image(images_dir / name.strip())
    except UnreadableImageError:
        return None


def evenly(count: int, limit: int) -> np.ndarray:
    """At most `limit` positions out of `count`, evenly spread and including both ends."""
    if count <= limit:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, max(limit, 1)).round().astype(np.int64))


def sample_note(shown: int, total: int, what: str, order: str) -> str:
    if shown == total:
        return f"all {total:,} {what}, {order}"
    return f"{shown:,} of {total:,} {what}, {order}; every row is in output.csv"


def _grid(encoded: EncodedPairs, pairs: Pairs, scores: RowScores, outliers: Outliers, options: ScoreOptions,
          path: Path) -> None:
    by_score = pairs.rows[np.argsort(scores.similarity[pairs.rows], kind="stable")]
    shown = by_score[evenly(len(by_score), options.max_grid)]
    flagged = set(outliers.rows.tolist())
    cells = [GridCell(load_image(options.images_dir, encoded.images[encoded.image_ids[row]]),
                      encoded.captions[encoded.caption_ids[row]], float(scores.similarity[row]), int(row) in flagged)
             for row in shown]
    note = sample_note(len(shown), len(by_score), "scored pairs", "from the lowest score to the highest")
    save(grid_figure(cells, f"Images with their captions: {note}"), path)


def _matrix(encoded: EncodedPairs, pairs: Pairs, options: ScoreOptions, path: Path) -> None:
    """A sample of images, each with its first caption: the dense matrix of the sample only."""
    first = np.flatnonzero(np.r_[True, pairs.images[1:] != pairs.images[:-1]])  # pairs are sorted by image
    chosen = first[evenly(len(first), options.max_matrix)]
    images, captions = pairs.images[chosen], pairs.captions[chosen]
    matrix = encoded.image_vectors[images] @ encoded.caption_vectors[captions].T
    note = sample_note(len(chosen), len(first), "images with a caption", "each with its first caption")
    save(matrix_figure(matrix, [encoded.images[i] for i in images], [encoded.captions[c] for c in captions], note),
         path)


def draw_figures(encoded: EncodedPairs, pairs: Pairs, scores: RowScores, outliers: Outliers,
                 options: ScoreOptions) -> list[FigureFile]:
    """Write the three figures and return them for the report; none without a scored row."""
    if len(pairs.rows) == 0:
        return []
    out = options.out_dir
    note = f"outlier cut-off: median - {options.cut:g} robust deviations of all {len(pairs.rows):,} scored rows"
    save(histogram_figure(scores.similarity, outliers.low_cutoff, scores.scores.median, note),
         out / "score_histogram.jpg")
    _grid(encoded, pairs, scores, outliers, options, out / "image_captions.jpg")
    _matrix(encoded, pairs, options, out / "similarity_matrix.jpg")
    return [FigureFile("score_histogram.jpg", "Distribution of pair scores, with the low-score cut-off"),
            FigureFile("image_captions.jpg", "A sample of pairs from the lowest score to the highest"),
            FigureFile("similarity_matrix.jpg", "Similarity of a sample of images with the captions of the others")]


def outlier_entries(outliers: Outliers, originals: dict[int, Original], encoded: EncodedPairs,
                    scores: RowScores, best: BestOther, options: ScoreOptions, limit: int) -> list[OutlierEntry]:
    """The first `limit` outliers with thumbnails, for the report."""
    entries = []
    for row, reason in zip(outliers.rows[:limit].tolist(), outliers.reasons[:limit], strict=True):
        image, caption = originals[row]
        similarity, other, other_score = added_values(encoded, scores, best, row)[:3]
        picture = load_image(options.images_dir, image)
        entries.append(OutlierEntry(image, caption, similarity, other, other_score, reason,
                                    thumbnail_uri(picture) if picture is not None else ""))
    return entries
