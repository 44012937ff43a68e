"""The perceptual signature: light edits of a picture stay within NEAR_DISTANCE, distinct pictures do not."""
import itertools
import random

import numpy as np

from lib.data.perceptual import SIGNATURE_BYTES, Signatures, signature
from lib.data.photos import photo_like
from lib.data.synthetic import draw_scene, random_scene
from lib.data.variants import near_variants, reencoded


def agree(signatures: list[bytes], pairs: list[tuple[int, int]]) -> np.ndarray:
    first, second = (np.array(side) for side in zip(*pairs, strict=True))
    return Signatures(signatures).same_picture(first, second)


def test_light_edits_stay_near_and_distinct_photos_do_not():
    rng = random.Random(0)
    photos = [photo_like(320, 240, seed) for seed in range(12)]
    signatures, pairs = [], []
    for photo in photos:
        signatures.append(signature(photo))
        original = len(signatures) - 1
        for variant in near_variants(photo, rng):
            signatures.append(signature(variant.image))
            pairs.append((original, len(signatures) - 1))
    assert all(len(s) == SIGNATURE_BYTES for s in signatures)
    assert agree(signatures, pairs).mean() >= 0.95
    originals = [p for p, _ in pairs[::len(pairs) // len(photos)]]
    assert not agree(signatures, list(itertools.combinations(originals, 2))).any()


def test_distinct_drawings_of_one_class_rarely_come_close():
    """The embedding can hardly tell these apart; the pixels must, for all but a sliver (0.07 % on the demo set)."""
    rng = random.Random(3)
    drawings = [reencoded(draw_scene(random_scene("red", "circle", rng), rng, 192), 92) for _ in range(40)]
    signatures = [signature(d) for d in drawings]
    assert agree(signatures, list(itertools.combinations(range(40), 2))).mean() <= 0.01


def test_a_missing_signature_is_marked():
    signatures = [signature(photo_like(64, 48, 1)), b""]
    assert Signatures(signatures).valid.tolist() == [True, False]
    assert agree(signatures, [(0, 0), (0, 1), (1, 1)]).tolist() == [True, False, False]
