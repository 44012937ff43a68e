"""Photo-like JPEGs for benchmarks and tests: decoding them costs what decoding a camera's photo costs.

The synthetic dataset's flat shapes on plain grounds compress to almost nothing and decode fast; these
have a smooth colour field, overlapping shapes, a slight blur and sensor-like grain, so a 640x480 one is
about 70 KB at quality 90, like a real photo of that size.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SHAPES_PER_PHOTO = 25
GRAIN = 6.0  # standard deviation of the noise, in grey levels


def photo_like(width: int, height: int, seed: int) -> Image.Image:
    """An RGB picture of the given size; the same seed gives the same picture."""
    rng = np.random.default_rng(seed)
    field = rng.integers(0, 256, (4 + seed % 3, 5 + seed % 4, 3), dtype=np.uint8)
    image = Image.fromarray(field).resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(SHAPES_PER_PHOTO):
        left, top = int(rng.integers(0, width)), int(rng.integers(0, height))
        box = (left, top, left + int(rng.integers(width // 20, width // 3)),
               top + int(rng.integers(height // 20, height // 3)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    image = image.filter(ImageFilter.GaussianBlur(radius=max(1, width // 800)))
    noisy = np.asarray(image, dtype=np.float32) + rng.normal(0.0, GRAIN, (height, width, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def write_photos(folder: Path, count: int, width: int = 640, height: int = 480, seed: int = 0) -> list[Path]:
    """`count` photo-like JPEGs (quality 90) in `folder`, every fourth one portrait; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        image = photo_like(width, height, seed + i)
        if i % 4 == 3:
            image = image.transpose(Image.Transpose.ROTATE_90)
        paths.append(folder / f"photo_{seed + i:05d}.jpg")
        image.save(paths[-1], quality=90)
    return paths
