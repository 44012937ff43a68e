"""Two pictures' pixels compared after laying one onto the other: the last check of a near duplicate.

The perceptual signatures (lib/data/perceptual.py) cannot see a small shape: on the demo dataset 124 pairs
of distinct drawings pass them, 12 of them with a cosine over the calibrated near cut, all a small shape
moved or changed on the same kind of ground (a purple square and a purple cross at one place, a ring
moved 10 px on a noisy grey). A 16 px thumbnail compared after registration could not separate those from
crops and turns. So, for a candidate pair only, both pictures are reduced to SIDE x SIDE and one is laid
onto the other: the best of a coarse grid of turns (ANGLES), scales (SCALES, either picture the crop) and
whole-pixel offsets at COARSE, refined by Powell's method (scipy.optimize) in continuous turn, scale and
shift, the window kept inside the larger view. The colours are then fitted (an affine map of RGB), and
two things are measured:
- differing: the largest blob of pixels whose colours still differ by more than DIFFERENCE beyond what
  EDGE_PLAY pixels of misregistration explain (the local gradient times EDGE_PLAY);
- the grain: where both pictures have a flat, textured ground (noise), its fine texture must correlate.
  A crop can explain a shape moved on a featureless ground; it cannot make two grounds' noise alike.
  (On a ground with no texture at all such a move stays undecidable: nothing but the shape tells.)

Measured (2026-12-02, scratch scripts of issue 22): the 124 demo pairs, against the ten edits of
lib/data/variants.near_variants (JPEG q90/70/50, resized 50/75 %, cropped 5/10 %, turned +-3 degrees,
recoloured) of 300 demo drawings (96 px), 152 drawings at 256 px (lib.data.synthetic.draw_scene) and 60
photo-like 640x480 pictures (lib.data.photos.photo_like): 5,120 edits.

| pairs | count | largest differing blob p50 / p99 / max | textured ground | grain correlation | judged same |
|---|---|---|---|---|---|
| edits of demo drawings | 3,000 | 0 / 3 / 11 | 697 | min 0.09, p1 0.44 | 99.9 % |
| edits of 256 px drawings | 1,520 | 0 / 1 / 10 | 431 | min 0.07, p1 0.53 | 99.8 % |
| edits of photos | 600 | 0 / 6 / 12 | 0 | - | 98.5 % (recolour 88 %: clipped channels) |
| demo: distinct, passing the signatures | 124 | min 0, p5 8, p50 92 | 22 | max 0.12 | 1.6 % (2) |
| demo: the 12 with cosine >= near | 12 | 1, 8, 12, 19, 31, 43, 49 ... 300 | 2 | 0.01, 0.01 | 0 |

MOST_DIFFERING 3 keeps 99.0 % of edits, 5 keeps 99.7 %, 8 keeps 99.8 % but lets one of the 12 through
(blob 8): 5 it is, a thin margin. GRAIN_CORRELATION 0.25: the two of the 12 on a noisy ground (a ring and a
cross, each moved; correlation 0.01) fail it, and it decides the ring (blob 1); 2 of the 1,128 textured
edits fail it too. Cost: 36 ms a pair on one core once both are read (a 12 MP JPEG is read and reduced in
28 ms, draft mode); the finder makes it only for pairs that passed the cosine and the signatures (12 on
the demo dataset). What it misses: a recolour that clips a photo's channels (the fit is affine).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image
from scipy import ndimage, optimize

SIDE = 64  # pictures are compared at SIDE x SIDE (each squeezed to a square: a crop or a turn keeps the shape)
COARSE = 32  # the registration is first searched at this side, then refined at SIDE (both in grey)
SCALES = (1.0, 0.97, 0.94, 0.91, 0.88)  # share of one picture's side that the other shows (crops up to 12 %)
ANGLES = (0.0, -3.0, -1.5, 1.5, 3.0)  # degrees
STARTS = 1  # the best coarse registrations refined, each way round
BORDER = 2  # pixels at the edge of the compared square left out: resampling and turning smear them
EDGE_PLAY = 1.0  # pixels: a difference is forgiven up to the local colour gradient times this (misregistration)
DIFFERENCE = 20.0  # colour distance (RGB, 0-441) beyond the forgiven part that makes a pixel differ
MOST_DIFFERING = 5  # pixels (of 64 x 64): the largest blob of differing pixels a near duplicate may hold
FLAT = 6.0  # colour gradient (after a blur of 1.5 px) under which a pixel is ground, not edge
GRAIN = 0.6  # grey levels: fine texture (noise) of the ground strong enough in both pictures to be compared
GRAIN_CORRELATION = 0.25  # the least correlation of two pictures' ground textures, where both have one
FLAT_SHARE = 0.3  # the share of ground pixels under which the texture is not compared

_CENTRED = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32) + 0.5 - SIDE / 2


@dataclass(frozen=True)
class Registration:
    """Where each pixel of `small` lies in `big`: big at scale * turn(angle) @ p + shift (p from the centre)."""

    swapped: bool  # the second picture is the larger view (the first is the crop)
    angle: float
    scale: float
    shift: tuple[float, float]
    cost: float  # mean squared difference after each channel's mean is taken out


@dataclass(frozen=True)
class PixelComparison:
    """What differs between two pictures once laid onto each other."""

    registration: Registration
    differing: int  # pixels in the largest blob of pixels that differ beyond what misregistration explains
    ground_share: float  # share of pixels that are flat ground in both
    grain: tuple[float, float]  # each picture's fine texture on that ground (grey levels)
    grain_correlation: float  # how alike the two textures are (1.0 where there is too little ground)

    @property
    def same(self) -> bool:
        """One picture, edited: no blob of differing pixels and, where both have a textured ground, the same grain."""
        textured = self.ground_share >= FLAT_SHARE and min(self.grain) >= GRAIN
        return self.differing <= MOST_DIFFERING and not (textured and self.grain_correlation < GRAIN_CORRELATION)


def prepared(image: Image.Image) -> np.ndarray:
    """The picture as SIDE x SIDE x 3 uint8 RGB (box-filtered, 12 KB), the form `compare` takes; a picture
    decoded at a reduced size first (lib/data/images.open_image with max_side) gives the same result."""
    return np.asarray(image.convert("RGB").resize((SIDE, SIDE), Image.Resampling.BOX), np.uint8)


def _turn(angle: float) -> np.ndarray:
    cos, sin = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    return np.array([[cos, -sin], [sin, cos]], np.float32)


def _sample(picture: np.ndarray, angle: float, scale: float, shift: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """`picture` (h x w x c) read, bilinearly, at scale * turn(angle) @ grid + shift (centred coordinates)."""
    side = picture.shape[0]
    where = np.einsum("ij,jyx->iyx", _turn(angle) * scale, grid) + shift.reshape(2, 1, 1) + side / 2 - 0.5
    return np.stack([ndimage.map_coordinates(picture[..., c], where, order=1, mode="nearest")
                     for c in range(picture.shape[2])], axis=-1)


def _zero_mean(values: np.ndarray) -> np.ndarray:
    return values - values.mean(axis=(-3, -2), keepdims=True)


def _coarse(big: np.ndarray, small: np.ndarray) -> list[tuple[float, float, float, np.ndarray]]:
    """(cost, angle, scale, shift) of every turn, scale and whole-pixel offset at COARSE, in grey."""
    grey_big = ndimage.gaussian_filter(big.mean(axis=2), 1.0)[..., None]
    target = _zero_mean(small.reshape(COARSE, 2, COARSE, 2, 3).mean(axis=(1, 3, 4))[..., None])
    found = []
    for angle in ANGLES:
        for scale in SCALES:
            if angle and scale > 0.95:
                continue  # a turned picture has empty corners unless it is cropped
            view_side = round(COARSE / scale)
            grid = np.mgrid[0:view_side, 0:view_side].astype(np.float32) + 0.5 - view_side / 2
            view = _sample(grey_big, angle, SIDE / view_side, np.zeros(2, np.float32), grid)
            windows = sliding_window_view(view, (COARSE, COARSE, 1)).squeeze(axis=2)
            cost = ((_zero_mean(windows) - target) ** 2).mean(axis=(2, 3, 4))
            y, x = np.unravel_index(int(np.argmin(cost)), cost.shape)
            offset = np.array([y, x], np.float32) + COARSE / 2 - view_side / 2  # view pixels from the centre
            found.append((float(cost[y, x]), angle, scale, _turn(angle) @ offset * (SIDE / view_side)))
    return sorted(found, key=lambda item: item[0])


def _cost(params: np.ndarray, big: np.ndarray, target: np.ndarray) -> float:
    """Mean squared difference (grey, zero mean) at (angle in degrees, scale in %, shift in pixels): units
    of about one pixel's movement at the picture's edge each, so that one tolerance serves them all."""
    angle, scale, dy, dx = float(params[0]), float(params[1]) / 100, float(params[2]), float(params[3])
    turn = abs(np.sin(np.radians(angle)))
    room = max(0.0, (1.0 - scale * (1.0 + turn)) * SIDE / 2) + 0.75  # the crop must lie inside the larger view
    outside = (max(0.0, abs(dy) - room) ** 2 + max(0.0, abs(dx) - room) ** 2
               + (max(0.0, scale - 1.0) ** 2 + max(0.0, SCALES[-1] - 0.03 - scale) ** 2) * 1e4)
    window = _sample(big, angle, scale, np.array([dy, dx], np.float32), _CENTRED)
    return float(((_zero_mean(window) - target) ** 2).mean()) + 50.0 * outside


def register(first: np.ndarray, second: np.ndarray) -> Registration:
    """The turn, scale and shift that lay one prepared picture onto the other with the least difference:
    the best STARTS of a coarse grid each way round, each refined by Powell's method (scipy.optimize)."""
    starts = [found + (bool(swapped),) for swapped, (big, small) in enumerate(((first, second), (second, first)))
              for found in _coarse(big, small)[:STARTS]]
    best: Registration | None = None
    for _, angle, scale, shift, swapped in starts:
        big, small = (second, first) if swapped else (first, second)
        grey_big, target = big.mean(axis=2, keepdims=True), _zero_mean(small.mean(axis=2, keepdims=True))
        found = optimize.minimize(_cost, np.array([angle, scale * 100, *shift], np.float64), args=(grey_big, target),
                                  method="Powell", options={"xtol": 0.05, "ftol": 1e-3, "maxfev": 200})
        angle, scale, dy, dx = float(found.x[0]), float(found.x[1]) / 100, float(found.x[2]), float(found.x[3])
        if best is None or found.fun < best.cost:
            best = Registration(swapped, angle, scale, (dy, dx), float(found.fun))
    assert best is not None, "there is always a registration"
    return best


def _gradient(picture: np.ndarray) -> np.ndarray:
    dy, dx = np.gradient(picture, axis=(0, 1))
    return np.sqrt((dy ** 2 + dx ** 2).sum(axis=2))


def _grain(picture: np.ndarray) -> np.ndarray:
    return (picture - ndimage.gaussian_filter(picture, (1.0, 1.0, 0))).mean(axis=2)


def _fit_colours(window: np.ndarray, target: np.ndarray) -> np.ndarray:
    """`window` through the affine map of RGB that brings it closest to `target` (least squares): a recolour,
    a brightness or a saturation change is not a difference."""
    design = np.concatenate([window.reshape(-1, 3), np.ones((SIDE * SIDE, 1), np.float32)], axis=1)
    weights, *_ = np.linalg.lstsq(design, target.reshape(-1, 3), rcond=None)
    return (design @ weights).reshape(target.shape).astype(np.float32)


def _largest_difference(fitted: np.ndarray, target: np.ndarray) -> int:
    """Pixels in the largest blob where the colours differ by more than DIFFERENCE beyond what a
    misregistration of EDGE_PLAY pixels explains (the local gradient times EDGE_PLAY)."""
    distance = np.linalg.norm(fitted - target, axis=2)
    unexplained = np.maximum(0.0, distance - EDGE_PLAY * np.maximum(_gradient(fitted), _gradient(target)))
    blobs, count = ndimage.label(unexplained[BORDER:-BORDER, BORDER:-BORDER] > DIFFERENCE)
    return int(np.bincount(blobs.ravel())[1:].max()) if count else 0


def _ground(fitted: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Where both pictures are flat ground, away from any edge and from the border."""
    edges = np.maximum(_gradient(ndimage.gaussian_filter(fitted, (1.5, 1.5, 0))),
                       _gradient(ndimage.gaussian_filter(target, (1.5, 1.5, 0))))
    inner = np.zeros((SIDE, SIDE), bool)
    inner[BORDER + 1:-BORDER - 1, BORDER + 1:-BORDER - 1] = True
    return ndimage.binary_erosion(edges < FLAT) & inner


def compare(first: np.ndarray, second: np.ndarray) -> PixelComparison:
    """Lay one prepared picture onto the other (register), fit the colours and measure what still differs:
    the largest blob of differing pixels, and how alike the grain of the ground is."""
    first, second = first.astype(np.float32), second.astype(np.float32)
    reg = register(first, second)
    big, small = (second, first) if reg.swapped else (first, second)
    window = _sample(big, reg.angle, reg.scale, np.array(reg.shift, np.float32), _CENTRED)
    fitted = _fit_colours(window, small)
    ground = _ground(fitted, small)
    a, b = _grain(window)[ground], _grain(small)[ground]  # not `fitted`: a fit shrinks a texture it cannot match
    grain = (float(a.std()), float(b.std())) if len(a) else (0.0, 0.0)
    correlation = float((a * b).mean() / np.sqrt((a * a).mean() * (b * b).mean() + 1e-6)) if len(a) > 20 else 1.0
    return PixelComparison(reg, _largest_difference(fitted, small), float(ground.mean()), grain, correlation)
