"""A perceptual signature of a picture's pixels: the near-duplicate check that the embedding cannot make alone.

Two distinct drawings of one class embed almost alike (the model was taught what they show, not where),
so the near tier of duplicate finding also asks the pixels. The signature is eleven 64-bit DCT perceptual
hashes (imagehash.phash, 88 bytes): of the whole picture, and of crops at 95 % and 90 % of each side taken
at the centre and at the four corners. Two pictures are `distance` apart: the fewest differing bits between
one's whole-picture hash and any hash of the other, either way round, so that a picture cropped by 5-10 %
meets the crop of the original that it is.

Measured (2026-12-02, 450 synthetic drawings at 256 px in 36 classes and 150 photo-like 640x480 JPEGs;
edits: JPEG q90-q50, resized to 50 and 75 %, cropped 5 and 10 %, rotated 3 degrees, recoloured):

| hashes compared | edits p95 | crop 10 % p95 | distinct same-class drawings: min / p0.1 / p1 | distinct photos: min |
|---|---|---|---|---|
| whole picture only (plain pHash) | 18 | 24 | 12 / 16 / 20 | 18 |
| these eleven | 8 | 10 | 6 / 10 / 14 | 16 |

A difference hash and a wavelet hash did worse on the same set (dHash: distinct drawings down to 2 bits;
wHash: edits p95 26-28). So NEAR_DISTANCE = 10 keeps ~95 % of edits, and the embedding's own cut
(calibrated per dataset) has to reject the 0.1 % of distinct same-class drawings that come this close.
"""
from __future__ import annotations

import imagehash
import numpy as np
from PIL import Image

SIGNATURE_BYTES = 88
NEAR_DISTANCE = 10  # bits of 64: the most a near duplicate's signature may differ (see the table above)
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


def signature(image: Image.Image) -> bytes:
    """The picture's 88-byte signature (eleven big-endian 64-bit hashes, the whole picture's first)."""
    grey = image.convert("L")
    grey.thumbnail((WORK_SIDE, WORK_SIDE), Image.Resampling.BILINEAR)
    bits = [np.packbits(imagehash.phash(crop).hash.flatten()) for crop in _crops(grey)]
    return np.concatenate(bits).tobytes()


def as_words(signatures: list[bytes]) -> np.ndarray:
    """Signatures as an (n, 11) uint64 array; a missing one (b'') is a row of which `valid` says False."""
    words = np.zeros((len(signatures), SIGNATURE_BYTES // 8), np.uint64)
    for row, value in enumerate(signatures):
        if len(value) == SIGNATURE_BYTES:
            words[row] = np.frombuffer(value, ">u8")
    return words


def valid(signatures: list[bytes]) -> np.ndarray:
    return np.array([len(value) == SIGNATURE_BYTES for value in signatures], bool)


def distances(words: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The distance of each pair (rows of `as_words`), as the module docstring defines it."""
    a, b = words[first], words[second]
    one_way = np.bitwise_count(a[:, :1] ^ b).min(axis=1)
    other_way = np.bitwise_count(b[:, :1] ^ a).min(axis=1)
    return np.minimum(one_way, other_way).astype(np.int64)
