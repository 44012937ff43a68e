"""Pictures with known words in them, for measuring and testing OCR: signs on photo-like grounds, screenshots.

A sign is a plate of one colour with one or two words drawn in a contrasting colour, in one of several fonts,
at a chosen height in pixels (the height of a capital letter), turned by up to 15 degrees, pasted on a
photo-like ground (lib/data/photos.py). A screenshot is many lines of small dark text on a light page. Each
picture comes with the words it holds, so recall can be counted per word and per height.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from lib.data.photos import photo_like

FONT_FOLDERS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"))
FONT_NAMES = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf",
              "DejaVuSansCondensed-Bold.ttf", "LiberationSans-Regular.ttf", "LiberationSerif-Bold.ttf")
WORDS = ("ZANZIBAR", "FERRY", "TIMETABLE", "PLATFORM", "BAKERY", "EXIT", "Museum", "Harbour", "Station", "Market",
         "Pharmacy", "Library", "Garden", "Bridge", "Theatre", "Airport", "Hotel", "Kitchen", "Parking", "Opening",
         "Tickets", "Departures", "Arrivals", "Welcome", "Closed", "Open", "Coffee", "Bicycle", "Tuesday", "Receipt",
         "Total", "Sunday", "Village", "Castle", "Beach", "Mountain", "Bus", "Café", "Straße", "Zürich")
MAX_TURN = 15.0
PLACE_TRIES = 20


@dataclass(frozen=True)
class RenderedWords:
    image: Image.Image
    words: tuple[str, ...]
    height: int  # the cap height the words were drawn at, in pixels of `image`


@cache
def fonts() -> tuple[str, ...]:
    """The TrueType fonts found on this machine among FONT_NAMES; Pillow's own scalable font when none is."""
    found = {path.name: str(path) for folder in FONT_FOLDERS if folder.is_dir() for path in folder.rglob("*.ttf")}
    return tuple(found[name] for name in FONT_NAMES if name in found) or ("",)


def font(name: str, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.truetype(name, size) if name else ImageFont.load_default(size)


def _sized_font(name: str, cap_height: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The font at the size whose capital 'H' is `cap_height` pixels tall."""
    probe = font(name, 100)
    left, top, right, bottom = probe.getbbox("H")
    return font(name, max(4, round(100 * cap_height / max(1, bottom - top))))


def sign(words: tuple[str, ...], cap_height: int, rng: random.Random) -> Image.Image:
    """The words on a plate (RGBA, transparent outside it, turned by up to MAX_TURN degrees)."""
    face = _sized_font(rng.choice(fonts()), cap_height)
    text = " ".join(words)
    measure = ImageDraw.Draw(Image.new("L", (1, 1)))
    left, top, right, bottom = (int(v) for v in measure.textbbox((0, 0), text, font=face))
    pad = max(4, cap_height // 2)
    plate = Image.new("RGBA", (right - left + 2 * pad, bottom - top + 2 * pad), (0, 0, 0, 0))
    dark = rng.random() < 0.5
    ground = tuple(rng.randrange(0, 70) if dark else rng.randrange(190, 256) for _ in range(3))
    ink = tuple(rng.randrange(200, 256) if dark else rng.randrange(0, 60) for _ in range(3))
    draw = ImageDraw.Draw(plate)
    draw.rounded_rectangle((0, 0, plate.width - 1, plate.height - 1), radius=pad // 2, fill=(*ground, 255))
    draw.text((pad - left, pad - top), text, font=face, fill=(*ink, 255))
    return plate.rotate(rng.uniform(-MAX_TURN, MAX_TURN), Image.Resampling.BICUBIC, expand=True)


def photo_with_words(cap_height: int, seed: int, width: int = 800, height: int = 600,
                     signs: int = 1) -> RenderedWords:
    """A photo-like picture with `signs` signs of one or two words each, at `cap_height` pixels. Signs do not
    overlap (one covering another would hide words that are then counted as missed); a sign that finds no
    free place in PLACE_TRIES tries, or does not fit, is left out with its words."""
    rng = random.Random(seed)
    image = photo_like(width, height, seed)
    words: list[str] = []
    taken: list[tuple[int, int, int, int]] = []
    for _ in range(signs):
        chosen = tuple(rng.sample(WORDS, rng.choice((1, 1, 2))))
        plate = sign(chosen, cap_height, rng)
        if plate.width >= width or plate.height >= height:
            continue
        for _ in range(PLACE_TRIES):
            x, y = rng.randrange(0, width - plate.width), rng.randrange(0, height - plate.height)
            box = (x, y, x + plate.width, y + plate.height)
            if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in taken):
                image.paste(plate, (x, y), plate)
                taken.append(box)
                words += chosen
                break
    return RenderedWords(image, tuple(words), cap_height)


def screenshot(seed: int, width: int = 1280, height: int = 800, cap_height: int = 11) -> RenderedWords:
    """A light page of many lines of dark text, like a screenshot of a document or a web page."""
    rng = random.Random(seed)
    image = Image.new("RGB", (width, height), (250, 250, 248))
    draw = ImageDraw.Draw(image)
    face = _sized_font(fonts()[0], cap_height)
    words: list[str] = []
    y, step = 12, int(cap_height * 2.2)
    while y + step < height:
        line = [rng.choice(WORDS) for _ in range(rng.randrange(4, 10))]
        draw.text((16, y), " ".join(line), font=face, fill=(30, 30, 30))
        words += line
        y += step
    return RenderedWords(image, tuple(words), cap_height)


def photo_without_words(seed: int, width: int = 800, height: int = 600) -> RenderedWords:
    return RenderedWords(photo_like(width, height, seed), (), 0)
