"""Pixels laid onto each other: light edits of a drawing or a photo are the same picture, a small shape moved,
changed or drawn on another grain is not."""
import random

import numpy as np
import pytest
from PIL import Image, ImageDraw

from lib.data.aligned_pixels import compare, prepared
from lib.data.photos import photo_like
from lib.data.variants import near_variants

SIDE = 96  # the demo dataset's size, where its 12 false near groups were


def drawing(x: float, y: float, shape: str = "circle", ground: str = "dotted", seed: int = 0) -> Image.Image:
    """A small shape (radius 7 px) on a grey ground, drawn at 2x and reduced, as lib/data/synthetic draws."""
    big, r = SIDE * 2, 14
    if ground == "noisy":
        grain = np.random.default_rng(seed).normal(190, 14, (big, big)).clip(0, 255).astype(np.uint8)
        image = Image.fromarray(grain, "L").convert("RGB")
    else:
        image = Image.new("RGB", (big, big), (200, 200, 200))
    draw = ImageDraw.Draw(image)
    if ground == "dotted":
        for cy in range(12, big, 24):
            for cx in range(12, big, 24):
                draw.ellipse((cx - 4, cy - 4, cx + 4, cy + 4), fill=(165, 165, 165))
    x, y, colour = x * 2, y * 2, (136, 58, 188)
    if shape == "circle":
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    elif shape == "ring":
        draw.ellipse((x - r, y - r, x + r, y + r), outline=colour, width=5)
    elif shape == "square":
        draw.rectangle((x - r, y - r, x + r, y + r), fill=colour)
    else:  # a cross
        draw.rectangle((x - r, y - r / 3, x + r, y + r / 3), fill=colour)
        draw.rectangle((x - r / 3, y - r, x + r / 3, y + r), fill=colour)
    return image.resize((SIDE, SIDE), Image.Resampling.LANCZOS)


def same(first: Image.Image, second: Image.Image) -> bool:
    return compare(prepared(first), prepared(second)).same


@pytest.mark.parametrize("first, second", [(drawing(40, 40, "circle"), drawing(50, 40, "circle")),
                                           (drawing(40, 40, "square"), drawing(40, 40, "cross"))],
                         ids=["moved", "changed"])
def test_a_small_shape_moved_or_changed_is_another_picture(first, second):
    """As the demo dataset's false near pairs: a shape 10 px away on a dotted ground, a square and a cross."""
    assert not same(first, second)


def test_another_grain_is_another_picture_even_where_the_shapes_match():
    """A ring moved a little on a noisy ground: a crop could explain the move, not grains that do not match."""
    assert not same(drawing(60, 60, "ring", "noisy", seed=1), drawing(54, 58, "ring", "noisy", seed=2))


@pytest.mark.parametrize("picture", [drawing(40, 40, "circle"), drawing(60, 60, "ring", "noisy", seed=1),
                                     photo_like(320, 240, 3)], ids=["dotted", "noisy", "photo"])
def test_light_edits_are_the_same_picture(picture):
    """Re-encoded, resized, cropped 5-10 %, turned 3 degrees, recoloured (lib/data/variants)."""
    edits = near_variants(picture, random.Random(0))
    assert [variant.kind for variant in edits if not same(picture, variant.image)] == []
