"""Edited copies of a picture, as people make them: re-encoded, resized, lightly cropped, slightly rotated,
recoloured.

The duplicate thresholds are calibrated on these (lib/ingest/calibrate.py) and the duplicate finder is
measured on them (lib/data/duplicate_set.py): they are what "the same picture" means in this project.
"""
from __future__ import annotations

import io
import math
import random
from typing import NamedTuple

from PIL import Image, ImageEnhance


class Variant(NamedTuple):
    kind: str
    image: Image.Image


def reencoded(image: Image.Image, quality: int) -> Image.Image:
    """The picture after a JPEG round trip at this quality."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def resized(image: Image.Image, factor: float) -> Image.Image:
    size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    return image.resize(size, Image.Resampling.LANCZOS if factor < 1 else Image.Resampling.BICUBIC)


def cropped(image: Image.Image, fraction: float, rng: random.Random) -> Image.Image:
    """`fraction` of the width and of the height cut away, split at random between the two sides."""
    cut_x, cut_y = round(image.width * fraction), round(image.height * fraction)
    left, top = rng.randint(0, cut_x), rng.randint(0, cut_y)
    return image.crop((left, top, image.width - (cut_x - left), image.height - (cut_y - top)))


def rotated(image: Image.Image, degrees: float) -> Image.Image:
    """Rotated, then cut to the largest centred rectangle of the same shape with no empty corners."""
    turned = image.rotate(degrees, Image.Resampling.BICUBIC)
    cos, sin = abs(math.cos(math.radians(degrees))), abs(math.sin(math.radians(degrees)))
    w, h = image.size
    scale = min(w / (w * cos + h * sin), h / (w * sin + h * cos))
    keep_w, keep_h = max(1, int(w * scale)), max(1, int(h * scale))
    left, top = (w - keep_w) // 2, (h - keep_h) // 2
    return turned.crop((left, top, left + keep_w, top + keep_h))


def recoloured(image: Image.Image, saturation: float, brightness: float) -> Image.Image:
    """Saturation and brightness scaled by these factors (1.0 leaves the picture as it is)."""
    return ImageEnhance.Brightness(ImageEnhance.Color(image.convert("RGB")).enhance(saturation)).enhance(brightness)


def random_edit(image: Image.Image, rng: random.Random) -> Image.Image:
    """One light edit of the kinds near_variants makes, at a random strength (the trainer's positive views)."""
    kind = rng.randrange(5)
    if kind == 0:
        return reencoded(image, rng.randint(30, 90))
    if kind == 1:
        return resized(image, rng.uniform(0.4, 0.9))
    if kind == 2:
        return cropped(image, rng.uniform(0.03, 0.12), rng)
    if kind == 3:
        return rotated(image, rng.uniform(-4.0, 4.0))
    return recoloured(image, rng.uniform(0.8, 1.25), rng.uniform(0.85, 1.15))


def near_variants(image: Image.Image, rng: random.Random) -> list[Variant]:
    """The light edits of one picture that must still count as the same picture (the calibration's set)."""
    return [
        Variant("jpeg q90", reencoded(image, 90)),
        Variant("jpeg q70", reencoded(image, 70)),
        Variant("jpeg q50", reencoded(image, 50)),
        Variant("resize 50%", resized(image, 0.5)),
        Variant("resize 75%", resized(image, 0.75)),
        Variant("crop 5%", cropped(image, 0.05, rng)),
        Variant("crop 10%", cropped(image, 0.10, rng)),
        Variant("rotate 3°", rotated(image, 3.0)),
        Variant("rotate -3°", rotated(image, -3.0)),
        Variant("recolour", recoloured(image, 1.2, 0.9)),
    ]
