"""A perceptual signature of a picture's pixels: the near-duplicate check that the embedding cannot make alone.

Two distinct drawings of one class embed almost alike (the model was taught what they show, not where),
so the near tier of duplicate finding also asks the pixels. The signature (107 bytes) is eleven 64-bit DCT
perceptual hashes (imagehash.phash) of the whole picture and of crops at 95 % and 90 % of each side taken
at the centre and at the four corners, then the picture's mean colour and the quantiles of its
brightness. Two pictures' hashes are
`distances` apart: the fewest differing bits between one's whole-picture hash and any hash of the other,
either way round, so that a picture cropped by 5-10 % meets the crop of the original that it is.

Measured (2026-12-02, 450 synthetic drawings at 256 px in 36 classes and 150 photo-like 640x480 JPEGs;
edits: JPEG q90-q50, resized to 50 and 75 %, cropped 5 and 10 %, rotated 3 degrees, recoloured):

| hashes compared | edits p95 | crop 10 % p95 | distinct same-class drawings: min / p0.1 / p1 | distinct photos: min |
|---|---|---|---|---|
| whole picture only (plain pHash) | 18 | 24 | 12 / 16 / 20 | 18 |
| these eleven | 8 | 10 | 6 / 10 / 14 | 16 |

A difference hash and a wavelet hash did worse on the same set (dHash: distinct drawings down to 2 bits;
wHash: edits p95 26-28); hashing a colour projection (the pixels' first principal component) instead of
the luminance did not help. So NEAR_DISTANCE = 10 keeps ~95 % of edits. The pairs of distinct drawings
that still come this close (0.19 % of the demo dataset's same-class pairs) are one shape at nearly the
same place on another background, which a DCT hash normalises away; the mean colour, also kept, takes out
63 % of them at TONE_TOLERANCE = 24 (the largest difference any edit made: 24, on brightness x0.9). The
shape of the brightness distribution (16 quantiles of the luminance standardised to mean 0 and deviation
1: blind to brightness and contrast, not to a checkered ground against a dotted one) takes out 5 in 6 of
the rest at SPREAD_TOLERANCE = 0.15, which 96.5 % of edits keep (p99 0.21). The embedding's own cut
(calibrated per dataset) and, for the pairs it leaves, the files' pixels laid onto each other
(lib/data/aligned_pixels.py: a small shape moved or changed) reject what is left.
"""
from __future__ import annotations

from collections.abc import Sequence

import imagehash
import numpy as np
from PIL import Image

HASH_BYTES = 88  # eleven 64-bit hashes
TONE_BYTES = 3  # the picture's mean colour (RGB, one byte each)
SPREAD_BYTES = 16  # and the shape of its brightness distribution: 16 quantiles of the standardised luminance
SIGNATURE_BYTES = HASH_BYTES + TONE_BYTES + SPREAD_BYTES
NEAR_DISTANCE = 10  # bits of 64: the most a near duplicate's hashes may differ (see the table above)
TONE_TOLERANCE = 24  # the most a near duplicate's mean colour may differ, per channel (0-255)
SPREAD_QUANTILES = np.linspace(3, 97, SPREAD_BYTES)
SPREAD_SCALE = 32  # a quantile of the standardised luminance z is stored as round(z * 32), clipped to int8
SPREAD_TOLERANCE = 0.15  # the most a near duplicate's quantiles may differ, on average, in standard deviations
WORK_SIDE = 256  # pictures are reduced to this first: the hashes read 32x32 pixels of each crop
CROP_SCALES = (0.95, 0.90)
CROP_PLACES = ((0.5, 0.5), (0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0))


def _crops(image: Image.Image) -> list[Image.Image]:
    width, height = image.size
    crops = [image]
    for scale in CROP_SCALES:
        crop_w, crop_h = max(1, round(width * scale)), max(1, round(height * scale))
        for fx, fy in CROP_PLACES:
            left, top = round((width - crop_w) * fx), round((height - crop_h) * fy)
            crops.append(image.crop((left, top, left + crop_w, top + crop_h)))
    return crops


def reduced(image: Image.Image) -> Image.Image:
    """The picture as the signature reads it: RGB, at most WORK_SIDE on its longer side (signature() of it is
    signature() of the picture, so a decoder can hand this on and leave the hashing to whoever needs it)."""
    colour = image.convert("RGB")
    colour.thumbnail((WORK_SIDE, WORK_SIDE), Image.Resampling.BILINEAR)
    return colour


def signature(image: Image.Image) -> bytes:
    """The picture's SIGNATURE_BYTES-byte signature: eleven big-endian 64-bit hashes (the whole picture's
    first), its mean colour, then the quantiles of its standardised brightness (int8, z * SPREAD_SCALE)."""
    colour = reduced(image)
    grey = colour.convert("L")
    bits = [np.packbits(imagehash.phash(crop).hash.flatten()) for crop in _crops(grey)]
    tone = np.asarray(colour, np.float32).reshape(-1, 3).mean(axis=0).round().astype(np.uint8)
    luminance = np.asarray(grey, np.float32).ravel()
    standard = (luminance - luminance.mean()) / max(float(luminance.std()), 1.0)
    spread = np.clip(np.percentile(standard, SPREAD_QUANTILES) * SPREAD_SCALE, -127, 127).round().astype(np.int8)
    return np.concatenate([*bits, tone, spread.view(np.uint8)]).tobytes()


class Signatures:
    """The signatures of n pictures, for comparing pairs; a missing one (b'') matches nothing."""

    def __init__(self, signatures: Sequence[bytes]) -> None:
        self.valid = np.array([len(value) == SIGNATURE_BYTES for value in signatures], bool)
        self.words = np.zeros((len(signatures), HASH_BYTES // 8), np.uint64)
        self.tones = np.zeros((len(signatures), TONE_BYTES), np.int16)
        self.spreads = np.zeros((len(signatures), SPREAD_BYTES), np.float32)
        for row in np.flatnonzero(self.valid).tolist():
            self.words[row] = np.frombuffer(signatures[row], ">u8", count=HASH_BYTES // 8)
            self.tones[row] = np.frombuffer(signatures[row], np.uint8, count=TONE_BYTES, offset=HASH_BYTES)
            self.spreads[row] = np.frombuffer(signatures[row], np.int8, offset=HASH_BYTES + TONE_BYTES) / SPREAD_SCALE

    def distances(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """Bits between each pair's hashes: the fewest between one's whole-picture hash and any of the other's."""
        a, b = self.words[first], self.words[second]
        one_way = np.bitwise_count(a[:, :1] ^ b).min(axis=1)
        other_way = np.bitwise_count(b[:, :1] ^ a).min(axis=1)
        return np.minimum(one_way, other_way).astype(np.int64)

    def same_picture(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """Whether each pair's pixels agree: hashes within NEAR_DISTANCE, mean colours within TONE_TOLERANCE
        and brightness distributions within SPREAD_TOLERANCE."""
        tone = np.abs(self.tones[first] - self.tones[second]).max(axis=1)
        spread = np.abs(self.spreads[first] - self.spreads[second]).mean(axis=1)
        return (self.valid[first] & self.valid[second] & (self.distances(first, second) <= NEAR_DISTANCE)
                & (tone <= TONE_TOLERANCE) & (spread <= SPREAD_TOLERANCE))
