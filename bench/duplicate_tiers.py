#!/usr/bin/env python3
"""Precision and recall of each duplicate tier on a generated library with planted copies of known tier.

The set (lib/data/duplicate_set.py): distinct synthetic pictures in class folders at 256 px; for about
half of them, copies planted with probability 0.6 each: byte-identical in backup/ (exact), re-encoded at
JPEG q35-80, resized to 40-80 %, cropped 5-10 % (near), and the scene drawn again with its shapes moved
(a re-take: similar). The dataset is built and calibrated as a user's would be, then grouped; a pair's
predicted tier is the strictest tier at which its two images share a group.

    .venv/bin/python -m bench.duplicate_tiers [--per-class 6] [--seed 0] [--model demo] [--near X --similar Y]

--near/--similar group with those thresholds in place of the calibrated ones (as find_duplicates.py
does), to measure the similar tier where a model's calibration leaves it empty.

--smoke: one distinct picture per class (36, about half of them with copies), calibrated on 16 images.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench import SmokeParser, link_model_cache
from lib.cli import run
from lib.data.aligned_pixels import MOST_DIFFERING, SIDE
from lib.data.duplicate_set import SAME_PICTURE, generate_duplicate_set, predicted_tier, tier_scores
from lib.data.perceptual import NEAR_DISTANCE, SPREAD_TOLERANCE, TONE_TOLERANCE
from lib.ingest.image_index import build_image_index
from lib.model.loading import load_encoder
from lib.serve.duplicate_finder import group_dataset
from lib.serve.duplicates import resolve_thresholds
from lib.serve.index_set import load_dataset
from lib.settings import load_settings
from lib.store.catalog import Catalog
from lib.store.dataset_figures import load_thresholds

SMOKE = dict(per_class=1, calibration_images=16)


def measure(root: Path, workspace: Path, args: argparse.Namespace):
    """Generate, build (which calibrates), group; return the planted files, the report and the build time."""
    files = generate_duplicate_set(root, seed=args.seed, per_class=args.per_class, planted_share=args.planted_share)
    settings = load_settings(environ={}, overrides=dict(workspace=str(workspace), dataset_name="planted",
                                                        dataset_path=str(root), model=args.model, num_workers=0,
                                                        calibration_images=args.calibration_images))
    encoder = load_encoder(args.model, cache_dir=link_model_cache(workspace) / "cache")
    started = time.perf_counter()
    build_image_index(settings, encoder, progress=False)
    seconds = time.perf_counter() - started
    catalog = Catalog.in_folder(settings.indexes_dir, readonly=True)
    dataset = load_dataset(settings.indexes_dir, "planted")
    calibrated = load_thresholds(settings.indexes_dir, "planted", dataset.record.model)
    report = group_dataset(dataset, catalog, resolve_thresholds(calibrated, "planted", args.near, args.similar))
    catalog.close()
    return files, report, seconds


def kind_table(files, levels) -> list[str]:
    """Per planted kind: the share of (original, copy) pairs found at their own tier, and at any tier."""
    originals = {f.family: f.path for f in files if f.kind == "original"}
    rows = []
    for kind, count in sorted(Counter(f.kind for f in files if f.kind != "original").items()):
        found = [predicted_tier(originals[f.family], f.path, levels) for f in files if f.kind == kind]
        right = sum(t == SAME_PICTURE[kind] for t in found) / count
        grouped = sum(t is not None for t in found) / count
        rows.append(f"| {kind} | {SAME_PICTURE[kind]} | {count} | {right:.0%} | {grouped:.0%} |")
    return rows


def bench(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-dups-") as tmp:
        files, report, seconds = measure(Path(tmp) / "library", Path(tmp) / "workspace", args)
    t = report.thresholds
    calibration = t.details["calibrated"]["details"] if t.details.get("given") else t.details
    print(f"\nmodel {args.model}; {len(files)} images ({Counter(f.kind for f in files)['original']} distinct); "
          f"build and calibration {seconds:.1f} s")
    if calibration.get("defaults"):
        print(f"near {t.near:.4f}, similar {t.similar:.4f}: {calibration['reason']}")
    else:
        print(f"{'given' if t.details.get('given') else 'calibrated'}: near {t.near:.4f}, similar {t.similar:.4f}; "
              f"calibration: edits caught by its near {calibration['edits_caught_by_near']:.0%}, estimated "
              f"duplicate share of distinct pairs {calibration['duplicate_share_of_distinct_pairs']:.1%}")
    print(f"near also needs the perceptual signatures to agree (hashes within {NEAR_DISTANCE} bits, mean colour "
          f"within {TONE_TOLERANCE}, brightness quantiles within {SPREAD_TOLERANCE}), then the aligned pixels "
          f"(no blob of over {MOST_DIFFERING} differing pixels at {SIDE} px, a textured ground's grain alike)")
    print("\n| tier | true pairs | predicted pairs | precision | recall |\n|---|---|---|---|---|")
    for tier, score in tier_scores(files, report.components_by_path()).items():
        print(f"| {tier} | {score.true_pairs} | {score.predicted_pairs} | {score.precision:.3f} | {score.recall:.3f} |")
    print("\n| planted copy | its tier | count | found at its tier | found at any tier |\n|---|---|---|---|---|")
    print("\n".join(kind_table(files, report.components_by_path())))


def make_parser() -> argparse.ArgumentParser:
    parser = SmokeParser(__doc__, SMOKE)
    parser.add_argument("--per-class", type=int, default=6, help="distinct pictures per class (36 classes)")
    parser.add_argument("--planted-share", type=float, default=0.5, help="share of pictures that get copies")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--calibration-images", type=int, default=48)
    parser.add_argument("--near", type=float, help="near threshold instead of the calibrated one")
    parser.add_argument("--similar", type=float, help="similar threshold instead of the calibrated one")
    return parser


def main(argv: list[str] | None = None) -> None:
    run("duplicate_tiers", make_parser(), bench, argv)


if __name__ == "__main__":
    main()
