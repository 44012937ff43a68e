"""The sub-pictures of an image: the photos of a collage, of a screenshot or of a slide, a photo inside its border.

Classical image processing, at a working size of at most WORK_SIDE pixels:
1. The background is the colour of full-length uniform lines with picture on both sides (a collage's gutters,
   the page between a screenshot's lines of text), or, where there are none, the few colours that fill the
   image's border on all four sides (a photo's frame, a striped or dotted ground).
2. What is not background is opened (thin strokes, antialiasing and JPEG ringing go), split into connected
   components, and components whose boxes touch are merged (a photo cut in two by a band of the page's colour).
3. A box is a picture if it is big enough (the model's input side, and a fraction of the image), mostly not
   background (text lines are not), not one flat colour (a header bar, a drawn shape on a textured ground are
   not: the spread is of the box's foreground pixels) and not a thin strip.

A picture with no background, or none of whose parts pass, is itself the only region. Measured on generated
collages and screenshots by bench/regions.py.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from PIL import Image
from scipy import ndimage

WORK_SIDE = 512
TOLERANCE = 10  # grey levels, per channel, within which a pixel has a background colour
BUCKET = 16  # the background's colours are found among colours quantized to 16 levels per channel
MAX_BACKGROUND_COLOURS = 8
SIDE_COVERAGE = 0.7  # of each side's pixels in the background's colours
UNIFORM_LINE = 0.97  # of a line's pixels within TOLERANCE of its median colour: a gutter
MIN_DENSITY = 0.55  # of a box's pixels not background
MIN_SPREAD = 6.0  # the largest standard deviation of a channel over a box's foreground: under it, a flat panel
MAX_ASPECT = 5.0
WHOLE = 0.9  # a single region covering this much of the image is the image


class Box(NamedTuple):
    """A rectangle in an image's own pixels: x0, y0 inclusive, x1, y1 exclusive."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def area(self) -> int:
        return max(0, self.x1 - self.x0) * max(0, self.y1 - self.y0)

    def iou(self, other: Box) -> float:
        inner = Box(max(self.x0, other.x0), max(self.y0, other.y0), min(self.x1, other.x1), min(self.y1, other.y1))
        union = self.area + other.area - inner.area if inner.x1 > inner.x0 and inner.y1 > inner.y0 else 0
        return inner.area / union if union else 0.0


class RegionLimits(NamedTuple):
    """Which regions count: none smaller than the model's input side or `min_fraction` of the image's area, and
    at most `max_regions` (the largest) per image."""

    min_side: int = 32
    min_fraction: float = 0.01
    max_regions: int = 16


DEFAULT_LIMITS = RegionLimits()


def find_regions(image: Image.Image, limits: RegionLimits = DEFAULT_LIMITS) -> list[Box]:
    """The image's sub-pictures in reading order (top to bottom, then left to right), in its own pixels; the
    whole image when it has none."""
    width, height = image.size
    whole = [Box(0, 0, width, height)]
    if min(width, height) < 2 * limits.min_side:
        return whole
    scale = max(width, height) / WORK_SIDE if max(width, height) > WORK_SIDE else 1.0
    small = image.convert("RGB")
    if scale > 1.0:
        small = small.resize((max(1, round(width / scale)), max(1, round(height / scale))), Image.Resampling.BOX)
    pixels = np.asarray(small, dtype=np.int16)
    background = background_mask(pixels)
    if background is None:
        return whole
    boxes = [Box(round(b.x0 * scale), round(b.y0 * scale), min(width, round(b.x1 * scale)),
                 min(height, round(b.y1 * scale))) for b in _picture_boxes(pixels, background)]
    boxes = [b for b in boxes if _big_enough(b, width * height, limits)]
    boxes = sorted(boxes, key=lambda b: b.area, reverse=True)[:limits.max_regions]
    if not boxes or (len(boxes) == 1 and boxes[0].area >= WHOLE * width * height):
        return whole
    return reading_order(boxes)


def reading_order(boxes: list[Box]) -> list[Box]:
    """Lines of boxes top to bottom, each left to right; a box is on a line when it overlaps the line's first box
    over half the height of the lower of the two (so that a box 1 pixel higher is not a line of its own)."""
    lines: list[list[Box]] = []
    for box in sorted(boxes, key=lambda b: b.y0):
        for line in lines:
            first = line[0]
            overlap = min(first.y1, box.y1) - max(first.y0, box.y0)
            if overlap >= 0.5 * min(first.y1 - first.y0, box.y1 - box.y0):
                line.append(box)
                break
        else:
            lines.append([box])
    return [box for line in lines for box in sorted(line, key=lambda b: b.x0)]


def background_mask(pixels: np.ndarray) -> np.ndarray | None:
    """True where an (H, W, 3) int16 picture shows its background; None when it has none."""
    colours = _gutter_colours(pixels)
    if colours is None:
        colours = _border_colours(pixels)
    if colours is None:
        return None
    mask = np.zeros(pixels.shape[:2], dtype=bool)
    for colour in colours:
        mask |= np.abs(pixels - colour).max(axis=2) <= TOLERANCE
    return mask


def _border_colours(pixels: np.ndarray) -> np.ndarray | None:
    """The few colours that fill the border on every side, or None."""
    sides = [pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]]
    border = np.concatenate(sides).reshape(-1, 3)
    codes = _codes(border)
    counts = np.bincount(codes, minlength=(256 // BUCKET) ** 3)
    top = np.argsort(counts)[::-1][:MAX_BACKGROUND_COLOURS]
    top = top[counts[top] >= 0.02 * len(codes)]
    colours = np.array([border[codes == code].mean(axis=0) for code in top])
    if not len(colours):
        return None
    for side in sides:
        near = (np.abs(side[:, None, :] - colours[None]).max(axis=2) <= TOLERANCE).any(axis=1)
        if near.mean() < SIDE_COVERAGE:
            return None
    return colours


def _gutter_colours(pixels: np.ndarray) -> np.ndarray | None:
    """The colours of uniform full-length rows or columns with non-uniform lines on both sides, or None."""
    found = []
    for axis_pixels in (pixels, pixels.transpose(1, 0, 2)):
        median = np.median(axis_pixels, axis=1)
        uniform = (np.abs(axis_pixels - median[:, None, :]).max(axis=2) <= TOLERANCE).mean(axis=1) >= UNIFORM_LINE
        busy = np.flatnonzero(~uniform)
        if len(busy) < 2:
            continue
        inner = np.flatnonzero(uniform)
        inner = inner[(inner > busy[0]) & (inner < busy[-1])]
        found.extend(median[inner])
    if not found:
        return None
    codes = _codes(np.array(found))
    keep = np.bincount(codes).argmax()
    return np.array(found)[codes == keep].mean(axis=0, keepdims=True)


def _codes(colours: np.ndarray) -> np.ndarray:
    levels = 256 // BUCKET
    q = np.clip(colours, 0, 255).astype(np.int64) // BUCKET
    return (q[:, 0] * levels + q[:, 1]) * levels + q[:, 2]


def _picture_boxes(pixels: np.ndarray, background: np.ndarray) -> list[Box]:
    """Boxes (at the working size) of the foreground's merged components that look like pictures."""
    foreground = ~background
    opened = ndimage.binary_opening(foreground, structure=np.ones((3, 3), bool))
    labels, _ = ndimage.label(opened)
    boxes = [Box(s[1].start, s[0].start, s[1].stop, s[0].stop) for s in ndimage.find_objects(labels) if s]
    return [b for b in _merged(boxes) if _looks_like_picture(b, foreground, pixels)]


def _merged(boxes: list[Box]) -> list[Box]:
    """Boxes that overlap or touch replaced by their union, until none do."""
    boxes = list(boxes)
    merged = True
    while merged:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                if a.x0 <= b.x1 and b.x0 <= a.x1 and a.y0 <= b.y1 and b.y0 <= a.y1:
                    boxes[i] = Box(min(a.x0, b.x0), min(a.y0, b.y0), max(a.x1, b.x1), max(a.y1, b.y1))
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    return boxes


def _looks_like_picture(box: Box, foreground: np.ndarray, pixels: np.ndarray) -> bool:
    w, h = box.x1 - box.x0, box.y1 - box.y0
    if min(w, h) < 4 or max(w, h) > MAX_ASPECT * min(w, h):
        return False
    window = (slice(box.y0, box.y1), slice(box.x0, box.x1))
    inside = foreground[window]
    if inside.mean() < MIN_DENSITY:
        return False
    return bool(pixels[window][inside].std(axis=0).max() >= MIN_SPREAD)


def _big_enough(box: Box, image_area: int, limits: RegionLimits) -> bool:
    return min(box.x1 - box.x0, box.y1 - box.y0) >= limits.min_side and box.area >= limits.min_fraction * image_area
