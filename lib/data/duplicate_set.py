"""A generated library with duplicates planted at known tiers, to measure the duplicate finder against.

One class folder per synthetic class, with distinct pictures drawn at a photo-like 256 px (the demo
model sees 96 px). Of some pictures, copies are planted: byte-identical in `backup/` (exact),
re-encoded, resized and lightly cropped beside the original (near), and the same scene drawn again
with its shapes moved (a re-take: similar). `tier_scores` compares a grouping with that truth.
"""
from __future__ import annotations

import itertools
import random
import shutil
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from PIL import Image

from lib.data.synthetic import COLOURS, SHAPES, draw_scene, random_scene
from lib.data.variants import cropped, reencoded, resized

TIERS = ("exact", "near", "similar")
SAME_PICTURE = {"original": "exact", "exact": "exact", "reencoded": "near", "resized": "near", "cropped": "near",
                "retake": "similar"}  # the tier that links each kind of planted file to its original


class Planted(NamedTuple):
    """One file of the set: its path under the root, the family (original and its copies) and what it is."""

    path: str
    family: int
    kind: str


class TierScore(NamedTuple):
    precision: float
    recall: float
    predicted_pairs: int
    true_pairs: int


def _save(image: Image.Image, path: Path, quality: int = 92) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "JPEG", quality=quality)


def _plant(root: Path, folder: str, name: str, image: Image.Image, scene, family: int,
           rng: random.Random, share: float) -> list[Planted]:
    """The copies of one original, each kind with probability `share`."""
    planted = []
    for kind in ("exact", "reencoded", "resized", "cropped", "retake"):
        if rng.random() >= share:
            continue
        path = f"backup/{folder}-{name}.jpg" if kind == "exact" else f"{folder}/{name}-{kind}.jpg"
        if kind == "exact":
            (root / "backup").mkdir(exist_ok=True)
            shutil.copyfile(root / folder / f"{name}.jpg", root / path)
        elif kind == "reencoded":
            _save(image, root / path, quality=rng.randint(35, 80))
        elif kind == "resized":
            _save(resized(image, rng.uniform(0.4, 0.8)), root / path)
        elif kind == "cropped":
            _save(cropped(reencoded(image, 92), rng.uniform(0.05, 0.10), rng), root / path)
        else:
            _save(draw_scene(scene, rng, image.width), root / path)
        planted.append(Planted(path, family, kind))
    return planted


def generate_duplicate_set(root: Path, seed: int = 0, per_class: int = 4, planted_share: float = 0.5,
                           size: int = 256) -> list[Planted]:
    """Write the set under `root` (a folder of class folders) and return every file with its truth."""
    rng = random.Random(seed)
    files: list[Planted] = []
    for colour, shape in itertools.product(COLOURS, SHAPES):
        folder = f"{colour}-{shape}"
        for i in range(per_class):
            scene = random_scene(colour, shape, rng)
            image = draw_scene(scene, rng, size)
            family, name = len({f.family for f in files}), f"{i:03d}"
            _save(image, root / folder / f"{name}.jpg")
            files.append(Planted(f"{folder}/{name}.jpg", family, "original"))
            if rng.random() < planted_share:
                files += _plant(root, folder, name, image, scene, family, rng, 0.6)
    return files


def pair_tier(a: Planted, b: Planted) -> str | None:
    """The truth for two files: the weaker of their links to the original they share, or None."""
    if a.family != b.family:
        return None
    return max(SAME_PICTURE[a.kind], SAME_PICTURE[b.kind], key=TIERS.index)


def predicted_tier(a: str, b: str, levels: Mapping[str, Mapping[str, int]]) -> str | None:
    """The strictest tier at which a grouping put both paths in one component, or None."""
    return next((tier for tier in TIERS if a in levels[tier] and levels[tier].get(a) == levels[tier].get(b)), None)


def tier_scores(files: list[Planted], levels: Mapping[str, Mapping[str, int]]) -> dict[str, TierScore]:
    """Pairwise precision and recall of each tier, and of being grouped at all ("any").

    `levels[tier]` maps a path to its component at that tier (paths in no group may be left out).
    """
    by_path = {f.path: f for f in files}
    families = defaultdict(list)
    for file in files:
        families[file.family].append(file)
    truth = {tuple(sorted((a.path, b.path))): pair_tier(a, b)
             for family in families.values() for a, b in itertools.combinations(family, 2)}
    members = defaultdict(list)
    for path, label in levels["similar"].items():
        members[label].append(path)
    predicted = {tuple(sorted(pair)): predicted_tier(*pair, levels)
                 for paths in members.values() for pair in itertools.combinations(paths, 2)
                 if pair[0] in by_path and pair[1] in by_path}
    scores = {}
    for tier in (*TIERS, "any"):
        want = {p for p, t in truth.items() if tier in ("any", t)}
        got = {p for p, t in predicted.items() if t and tier in ("any", t)}
        hits = len(want & got)
        scores[tier] = TierScore(hits / len(got) if got else 1.0, hits / len(want) if want else 1.0, len(got),
                                 len(want))
    return scores
