"""The edits that define "the same picture", and the generated set with planted copies and its scoring."""
import random

from PIL import Image

from lib.data.duplicate_set import Planted, generate_duplicate_set, pair_tier, tier_scores
from lib.data.variants import cropped, near_variants, rotated


def test_edits_keep_most_of_the_picture():
    image = Image.new("RGB", (200, 100), (200, 40, 40))
    small = cropped(image, 0.1, random.Random(0))
    assert small.size == (180, 90)
    turned = rotated(image, 3.0)
    assert 0.85 * 200 < turned.width < 200 and turned.getpixel((0, 0)) == (200, 40, 40)  # no empty corner
    kinds = [v.kind for v in near_variants(image, random.Random(0))]
    assert len(kinds) == len(set(kinds)) == 10


def test_planted_files_and_their_truth(tmp_path):
    files = generate_duplicate_set(tmp_path, seed=1, per_class=1, planted_share=1.0)
    assert sum(f.kind == "original" for f in files) == 36 and all((tmp_path / f.path).is_file() for f in files)
    exact = [f for f in files if f.kind == "exact"]
    original = next(f for f in files if f.kind == "original" and f.family == exact[0].family)
    assert (tmp_path / exact[0].path).read_bytes() == (tmp_path / original.path).read_bytes()
    assert exact[0].path.startswith("backup/")


def test_pair_truth_and_scores_by_hand():
    files = [Planted("a.jpg", 0, "original"), Planted("b.jpg", 0, "exact"), Planted("c.jpg", 0, "reencoded"),
             Planted("d.jpg", 0, "retake"), Planted("e.jpg", 1, "original")]
    assert pair_tier(files[0], files[1]) == "exact" and pair_tier(files[1], files[2]) == "near"
    assert pair_tier(files[2], files[3]) == "similar" and pair_tier(files[0], files[4]) is None
    levels = {"exact": {"a.jpg": 0, "b.jpg": 0, "c.jpg": 1, "e.jpg": 2},
              "near": {"a.jpg": 0, "b.jpg": 0, "c.jpg": 0, "e.jpg": 0},
              "similar": {"a.jpg": 0, "b.jpg": 0, "c.jpg": 0, "e.jpg": 0}}
    scores = tier_scores(files, levels)
    assert scores["exact"] == (1.0, 1.0, 1, 1)
    assert scores["near"].precision == 2 / 5 and scores["near"].recall == 1.0  # e.jpg was wrongly joined
    assert scores["similar"].recall == 0.0
