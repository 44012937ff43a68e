"""The figures are valid JPEGs whose drawn text never overlaps, from one pair to many and with long captions."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text
from PIL import Image

from lib.captions.figures import GridCell, grid_figure, histogram_figure, matrix_figure, save

pytestmark = pytest.mark.filterwarnings("ignore:Glyph .* missing from font")

LONG = ("a photograph of an extraordinarily long caption that keeps going with many words about the scene, "
        "WWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWW and a URL https://example.org/" + "x" * 80)


def drawn_text_boxes(figure) -> list[tuple[str, object]]:
    """Every piece of text the renderer actually draws, with its box in pixels."""
    canvas = FigureCanvasAgg(figure)
    renderer = canvas.get_renderer()
    boxes = []
    original = Text.draw

    def spy(text, renderer_):
        if text.get_visible() and text.get_text().strip():
            boxes.append((text.get_text(), text.get_window_extent(renderer_)))
        return original(text, renderer_)

    Text.draw = spy
    try:
        figure.draw(renderer)
    finally:
        Text.draw = original
    return boxes


def overlaps(figure) -> list[tuple[str, str]]:
    boxes = drawn_text_boxes(figure)
    assert boxes, "nothing was drawn"
    width, height = figure.canvas.get_width_height()
    outside = [t for t, box in boxes if box.x0 < -1 or box.y0 < -1 or box.x1 > width + 1 or box.y1 > height + 1]
    assert not outside, f"text outside the figure: {outside}"
    return [(a, b) for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2)
            if box_a.shrunk(0.98, 0.98).overlaps(box_b.shrunk(0.98, 0.98))]


def test_the_check_sees_overlapping_text():
    figure = grid_figure(cells(2), "two pairs")
    figure.text(0.5, 0.99, "a note drawn over the title", ha="center", va="top", fontsize=10)
    assert overlaps(figure)


def cells(count: int) -> list[GridCell]:
    picture = Image.new("RGB", (80, 60), (200, 40, 40))
    captions = ["red", "a red circle on a plain background", LONG, "", "ein großer roter Kreis — 赤い丸"]
    return [GridCell(picture if i % 4 else None, captions[i % len(captions)], 0.5 - i / 100, i % 3 == 0)
            for i in range(count)]


@pytest.mark.parametrize("count", [1, 4, 7, 48])
def test_grid_text_never_overlaps(count, tmp_path):
    figure = grid_figure(cells(count), f"{count} of 1,000,000 scored pairs, from the lowest score to the highest; "
                                       "every row is in output.csv")
    assert overlaps(figure) == []
    save(figure, tmp_path / "grid.jpg")
    with Image.open(tmp_path / "grid.jpg") as image:
        assert image.format == "JPEG" and image.width >= 600 and image.height <= 5000


@pytest.mark.parametrize("size", [1, 5, 30, 100])
def test_matrix_labels_never_overlap(size, tmp_path):
    rng = np.random.default_rng(size)
    labels = [f"folder/{LONG[:20 + i % 40]}_{i}.jpg" for i in range(size)]
    figure = matrix_figure(rng.uniform(-0.2, 0.8, (size, size)), labels, [LONG[i % 50:] for i in range(size)],
                           f"{size} of 250,000 images with a caption, each with its first caption")
    assert overlaps(figure) == []
    save(figure, tmp_path / "matrix.jpg")
    with Image.open(tmp_path / "matrix.jpg") as image:
        image.verify()


@pytest.mark.parametrize("rows", [1, 50, 200_000])
def test_histogram_marks_the_cutoff_without_overlap(rows, tmp_path):
    similarity = np.random.default_rng(rows).normal(0.3, 0.05, rows).astype(np.float32)
    figure = histogram_figure(similarity, 0.15, 0.3, "outlier cut-off: median - 3 robust deviations of all rows")
    assert overlaps(figure) == []
    legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert any("cut-off 0.150" in text for text in legend)
    save(figure, tmp_path / "histogram.jpg")
    with Image.open(tmp_path / "histogram.jpg") as image:
        assert image.format == "JPEG"
