"""A seeded, compositional synthetic image dataset in the tiny-imagenet-200 layout, with captions.

Every image shows one to three shapes of one colour on a textured grey background. The class is
"<colour> <shape>" (36 classes); count, size and background vary inside a class, so that text
queries about any attribute mean something.
"""
from __future__ import annotations

import argparse
import csv
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from lib.cli import new_parser, run

COLOURS = {
    "red": (215, 38, 38),
    "green": (36, 160, 64),
    "blue": (40, 84, 222),
    "yellow": (236, 206, 30),
    "purple": (136, 58, 188),
    "orange": (244, 132, 26),
}
SHAPES = ("circle", "square", "triangle", "star", "cross", "ring")
PLURALS = {"cross": "crosses"}
COUNT_WORDS = {1: "one", 2: "two", 3: "three"}
SIZES = ("small", "large")
BACKGROUNDS = ("plain", "striped", "dotted", "checkered", "noisy")
PREFIXES = ("", "", "a photo of ", "an image of ", "a picture of ")
GENERATED_MARKER = ".generated"


@dataclass(frozen=True)
class Scene:
    """What one image shows; its class is colour and shape."""

    colour: str
    shape: str
    count: int
    size: str
    background: str

    @property
    def class_name(self) -> str:
        return f"{self.colour} {self.shape}"


class SyntheticImage(NamedTuple):
    path: Path
    scene: Scene
    captions: list[str]


def class_names() -> list[str]:
    return [f"{colour} {shape}" for colour in COLOURS for shape in SHAPES]


def wnid(class_index: int) -> str:
    """A tiny-imagenet style class id (n + 8 digits) for the class at this index."""
    return f"n9{class_index:07d}"


def plural(shape: str) -> str:
    return PLURALS.get(shape, shape + "s")


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def describe(scene: Scene, rng: random.Random) -> str:
    """One caption for the scene, naming all of its attributes or only some, in varied wording."""
    noun = scene.shape if scene.count == 1 else plural(scene.shape)
    quantity = COUNT_WORDS[scene.count]
    on_bg = f"on a {scene.background} background"
    forms = [
        f"{quantity} {scene.size} {scene.colour} {noun} {on_bg}",
        f"{quantity} {scene.colour} {noun}",
        f"{scene.size} {scene.colour} {noun}",
        f"{scene.colour} {noun} {on_bg}",
        f"{article(scene.colour)} {scene.class_name}",
        scene.class_name,
        scene.colour,
        scene.shape,
        f"something {scene.colour}",
        f"{quantity} {noun}",
        f"{article(scene.shape)} {scene.shape} {on_bg}",
    ]
    weights = [6, 3, 3, 3, 4, 4, 2, 2, 1, 2, 1]
    caption = rng.choices(forms, weights)[0]
    return rng.choice(PREFIXES) + caption


def random_scene(colour: str, shape: str, rng: random.Random) -> Scene:
    return Scene(colour, shape, rng.choice((1, 2, 3)), rng.choice(SIZES), rng.choice(BACKGROUNDS))


def _background(kind: str, size: int, rng: random.Random) -> Image.Image:
    base = rng.randint(150, 235) if rng.random() < 0.6 else rng.randint(40, 110)
    ink = base - rng.randint(25, 45) if base > 128 else base + rng.randint(25, 45)
    image = Image.new("RGB", (size, size), (base, base, base))
    draw = ImageDraw.Draw(image)
    step = rng.randint(size // 10, size // 6)
    if kind == "striped":
        angle_vertical = rng.random() < 0.5
        for offset in range(0, size, step * 2):
            box = (offset, 0, offset + step - 1, size) if angle_vertical else (0, offset, size, offset + step - 1)
            draw.rectangle(box, fill=(ink, ink, ink))
    elif kind == "dotted":
        for y in range(step // 2, size, step):
            for x in range(step // 2, size, step):
                r = max(1, step // 5)
                draw.ellipse((x - r, y - r, x + r, y + r), fill=(ink, ink, ink))
    elif kind == "checkered":
        for y in range(0, size, step):
            for x in range(0, size, step):
                if (x // step + y // step) % 2:
                    draw.rectangle((x, y, x + step - 1, y + step - 1), fill=(ink, ink, ink))
    elif kind == "noisy":
        noise = np.random.default_rng(rng.getrandbits(32)).normal(base, 40, (size, size))
        grey = Image.fromarray(noise.clip(0, 255).astype(np.uint8), "L").convert("RGB")
        image = Image.blend(image, grey, 0.35)
    return image


def _polygon(cx: float, cy: float, radius: float, points: int, rotation: float, inner: float = 1.0) -> list:
    vertices = []
    corners = points * (2 if inner < 1.0 else 1)
    for i in range(corners):
        r = radius * (inner if i % 2 else 1.0) if inner < 1.0 else radius
        angle = rotation + 2 * math.pi * i / corners
        vertices.append((cx + r * math.cos(angle), cy + r * math.sin(angle)))
    return vertices


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, rotation: float,
                fill: tuple[int, int, int]) -> None:
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "ring":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=fill, width=max(2, int(r * 0.35)))
    elif shape == "square":
        draw.polygon(_polygon(cx, cy, r * 1.15, 4, rotation), fill=fill)
    elif shape == "triangle":
        draw.polygon(_polygon(cx, cy, r * 1.2, 3, rotation), fill=fill)
    elif shape == "star":
        draw.polygon(_polygon(cx, cy, r * 1.25, 5, rotation, inner=0.45), fill=fill)
    elif shape == "cross":
        arm = r * 0.36
        bars = [(-r, -arm, r, arm), (-arm, -r, arm, r)]
        for x0, y0, x1, y1 in bars:
            corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
            cos, sin = math.cos(rotation), math.sin(rotation)
            draw.polygon([(cx + x * cos - y * sin, cy + x * sin + y * cos) for x, y in corners], fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def _positions(count: int, radius: float, size: int, rng: random.Random) -> list[tuple[float, float]]:
    """Centres that keep shapes inside the image and, where there is room, apart."""
    placed: list[tuple[float, float]] = []
    for _ in range(200):
        if len(placed) == count:
            break
        x, y = rng.uniform(radius, size - radius), rng.uniform(radius, size - radius)
        if all(math.dist((x, y), p) > 2.1 * radius for p in placed):
            placed.append((x, y))
    while len(placed) < count:
        placed.append((rng.uniform(radius, size - radius), rng.uniform(radius, size - radius)))
    return placed


def draw_scene(scene: Scene, rng: random.Random, size: int = 96) -> Image.Image:
    """Render the scene at 2x and downsample, for smooth edges."""
    big = size * 2
    image = _background(scene.background, big, rng)
    draw = ImageDraw.Draw(image)
    limit = 0.16 if scene.count == 1 else 0.13
    lo, hi = (0.09, 0.12) if scene.size == "small" else (limit, limit + 0.06)
    radius = rng.uniform(lo, hi) * big
    red, green, blue = (min(255, max(0, c + rng.randint(-18, 18))) for c in COLOURS[scene.colour])
    fill = (red, green, blue)
    rotation = rng.uniform(0, 2 * math.pi)
    for cx, cy in _positions(scene.count, radius, big, rng):
        _draw_shape(draw, scene.shape, cx, cy, radius, rotation, fill)
    image = image.resize((size, size), Image.Resampling.LANCZOS)
    return image.filter(ImageFilter.GaussianBlur(0.3)) if rng.random() < 0.3 else image


def _write_image(image: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "JPEG", quality=92)


def _generate_split(root: Path, split: str, per_class: int, rng: random.Random, size: int,
                    captions_per_image: int) -> list[SyntheticImage]:
    images = []
    for index, (colour, shape) in enumerate((c, s) for c in COLOURS for s in SHAPES):
        for i in range(per_class):
            scene = random_scene(colour, shape, rng)
            if split == "train":
                path = root / "train" / wnid(index) / "images" / f"{wnid(index)}_{i}.JPEG"
            else:
                path = root / "val" / "images" / f"val_{index * per_class + i}.JPEG"
            _write_image(draw_scene(scene, rng, size), path)
            captions = [describe(scene, rng) for _ in range(captions_per_image)]
            images.append(SyntheticImage(path, scene, captions))
    return images


def _write_metadata(root: Path, train: list[SyntheticImage], val: list[SyntheticImage]) -> None:
    names = class_names()
    (root / "wnids.txt").write_text("".join(wnid(i) + "\n" for i in range(len(names))))
    (root / "words.txt").write_text("".join(f"{wnid(i)}\t{name}\n" for i, name in enumerate(names)))
    if val:
        (root / "val" / "val_annotations.txt").write_text("".join(
            f"{item.path.name}\t{wnid(names.index(item.scene.class_name))}\t0\t0\t0\t0\n" for item in val))
    with open(root / "captions.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "caption"])
        for item in train + val:
            for caption in item.captions:
                writer.writerow([item.path.relative_to(root).as_posix(), caption])
    (root / GENERATED_MARKER).write_text("written by lib.data.synthetic; scripts/clean.sh may delete it\n")


def generate_dataset(root: Path, seed: int = 0, per_class: int = 50, val_per_class: int = 0,
                     image_size: int = 96, captions_per_image: int = 1) -> list[SyntheticImage]:
    """Write the dataset under `root` and return its training images; the same seed gives the same files."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    train = _generate_split(root, "train", per_class, rng, image_size, captions_per_image)
    val = _generate_split(root, "val", val_per_class, rng, image_size, captions_per_image) if val_per_class else []
    _write_metadata(root, train, val)
    return train


def make_parser() -> argparse.ArgumentParser:
    parser = new_parser("Write the synthetic demo dataset (tiny-imagenet-200 layout).")
    parser.add_argument("root", type=Path, help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-class", type=int, default=50, help="training images per class")
    parser.add_argument("--val-per-class", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--captions-per-image", type=int, default=1)
    return parser


def write(args: argparse.Namespace) -> None:
    images = generate_dataset(args.root, args.seed, args.per_class, args.val_per_class, args.image_size,
                              args.captions_per_image)
    print(f"wrote {len(images)} training images in {len(class_names())} classes to {args.root}")


def main(argv: list[str] | None = None) -> None:
    run("synthetic", make_parser(), write, argv)


if __name__ == "__main__":
    main()
