"""Generated collages and screenshots with the boxes of the pictures they hold, for bench/regions.py and tests.

A grid collage (columns x rows, equal cells, gutters of one colour, with or without an outer margin), a free
collage (pictures of several sizes packed in rows on a plain or striped ground) and a screenshot (a web page
with a header bar, lines of text and one to three photos among them).
"""
from __future__ import annotations

import random
from typing import NamedTuple

from PIL import Image, ImageDraw, ImageFont

from lib.data.regions import Box

GROUNDS = [(255, 255, 255), (20, 20, 20), (236, 230, 214), (40, 70, 120), (200, 40, 60)]
WORDS = ("the quick brown fox jumps over a lazy dog while photographers archive their pictures and search "
         "them by text on their own machines").split()


class Composite(NamedTuple):
    """A generated picture and, for each of its parts in order, where it was placed."""

    image: Image.Image
    boxes: list[Box]


def _fitted(part: Image.Image, width: int, height: int) -> Image.Image:
    """The part resized to fill width x height, cropped to that aspect from its centre."""
    scale = max(width / part.width, height / part.height)
    size = (max(width, round(part.width * scale)), max(height, round(part.height * scale)))
    resized = part.convert("RGB").resize(size, Image.Resampling.BICUBIC)
    left, top = (resized.width - width) // 2, (resized.height - height) // 2
    return resized.crop((left, top, left + width, top + height))


def grid_collage(parts: list[Image.Image], columns: int, cell: int, gutter: int, ground: tuple[int, int, int],
                 margin: bool = True) -> Composite:
    """The parts in a grid of `columns`, each in a cell x cell square, `gutter` pixels apart."""
    rows = -(-len(parts) // columns)
    outer = gutter if margin else 0
    image = Image.new("RGB", (2 * outer + columns * cell + (columns - 1) * gutter,
                              2 * outer + rows * cell + (rows - 1) * gutter), ground)
    boxes = []
    for i, part in enumerate(parts):
        x, y = outer + (i % columns) * (cell + gutter), outer + (i // columns) * (cell + gutter)
        image.paste(_fitted(part, cell, cell), (x, y))
        boxes.append(Box(x, y, x + cell, y + cell))
    return Composite(image, boxes)


def _ground(size: tuple[int, int], rng: random.Random, striped: bool) -> Image.Image:
    colour = rng.choice(GROUNDS)
    image = Image.new("RGB", size, colour)
    if striped:
        other = tuple(min(255, c + 40) if sum(colour) < 384 else c - 40 for c in colour)
        draw = ImageDraw.Draw(image)
        for x in range(-size[1], size[0], 24):
            draw.line([(x, 0), (x + size[1], size[1])], fill=other, width=8)
    return image


def free_collage(parts: list[Image.Image], rng: random.Random, width: int = 1200,
                 striped: bool = False) -> Composite:
    """The parts whole at several sizes, packed in rows with gutters of 8 to 40 pixels."""
    placed: list[tuple[Image.Image, Box]] = []
    x = y = gap = rng.randint(8, 40)
    row_height = 0
    for part in parts:
        h = rng.randint(160, 320)
        w = round(h * part.width / part.height)  # a free layout scales a picture whole
        if x + w > width - gap and x > gap:
            x, y = gap, y + row_height + rng.randint(8, 40)
            row_height = 0
        top = y + rng.randint(0, 30)
        placed.append((_fitted(part, w, h), Box(x, top, x + w, top + h)))
        x += w + rng.randint(8, 40)
        row_height = max(row_height, h + top - y)
    image = _ground((width, y + row_height + gap), rng, striped)
    for picture, box in placed:
        image.paste(picture, (box.x0, box.y0))
    return Composite(image, [box for _, box in placed])


def screenshot(parts: list[Image.Image], rng: random.Random, width: int = 1280) -> Composite:
    """A page: a header bar with a title, paragraphs of text, and the parts as photos between paragraphs,
    some beside a column of text."""
    font = ImageFont.load_default(size=16)
    blocks: list[int | Image.Image] = []  # lines of text, or a photo
    for part in parts:
        blocks += [rng.randint(2, 5), part]
    blocks.append(rng.randint(2, 4))
    height = 90 + sum(24 * block + 20 if isinstance(block, int) else 340 for block in blocks)
    image = Image.new("RGB", (width, height), rng.choice([(255, 255, 255), (246, 246, 246)]))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width, 64), fill=rng.choice([(30, 60, 110), (200, 40, 60), (30, 30, 30)]))
    draw.text((40, 20), "Daily News - Pictures of the week", fill=(255, 255, 255), font=font)
    y, boxes = 90, []
    for block in blocks:
        if isinstance(block, int):
            for _ in range(block):
                line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 16)))
                draw.text((60, y), line, fill=(40, 40, 40), font=font)
                y += 24
            y += 20
            continue
        w = rng.randint(300, 640)  # a page shows a photo whole, scaled to fit its column
        h = min(320, round(w * block.height / block.width))
        w = round(h * block.width / block.height)
        x = rng.choice([60, 60, width - 60 - w])
        image.paste(_fitted(block, w, h), (x, y))
        boxes.append(Box(x, y, x + w, y + h))
        beside = 60 if x > 60 else x + w + 40
        for k in range(rng.randint(0, 6)):
            draw.text((beside, y + 10 + 24 * k), " ".join(rng.choice(WORDS) for _ in range(5)), fill=(40, 40, 40),
                      font=font)
        y += h + 20
    return Composite(image, boxes)
