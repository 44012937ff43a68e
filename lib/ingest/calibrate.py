"""Calibrate the near and similar thresholds of duplicate finding for one dataset, from its model itself.

Two score distributions, measured on the dataset's own images with the model it was built with:
- edits: the cosine between an image and each of its light edits (lib/data/variants.near_variants:
  JPEG q90/70/50, resized to 50 and 75 %, cropped 5 and 10 %, rotated by +-3 degrees), for a sample;
- distinct: the cosine between two different images of one class (two images of one partition; the
  partitions of a flat folder are chunks of neighbouring files), byte-identical pairs left out.
The rule is precision first for `similar`, which the embedding decides alone: it is the lowest cosine
that at most one pair of distinct images of a class in a thousand reaches (DISTINCT_RATE). `near` is the
2nd percentile of edits (98 % of light edits reach it): the near tier also needs the pixels' perceptual
signatures to agree (lib/data/perceptual.Signatures.same_picture), which is what keeps distinct drawings
of one class out of it, so its cosine may sit below `similar`. Measured with the demo model (bench
duplicate_tiers and the demo dataset): the 1st percentile gave near recall 0.912 and 12 false near groups
on the demo dataset, the 2nd 0.912 and 11, the 5th 0.835 (crops fall away) and 7.

A library of fewer than SMALL_LIBRARY images (or with fewer than MIN_DISTINCT_PAIRS same-class pairs) is
not calibrated: a few dozen pairs make a noisy percentile (an 18-image library once set `near` above 2 of
its 3 re-saves). It gets DEFAULT_NEAR and DEFAULT_SIMILAR instead, recorded with `defaults` in the
details, and the answer and the page say so.

The distinct pairs of a real library hold its duplicates too (that is why one runs the tool), and a few
percent of them would lift a plain 99.9th percentile up to the edits (measured on a generated set with
10 % of such pairs: 0.9999 instead of 0.991). So their share is estimated from the pairs that score above
the median edit, where distinct images hardly reach, and a tail of that share shaped like the edits' tail
is subtracted before the rate is read off (the same set gives 0.994). The share is capped at
MAX_DUPLICATE_SHARE: with a weak model, distinct pairs do reach the median edit and would be taken for
copies (uniform test distributions: 0.937 instead of 0.95, where no cap gives 0.80).

Calibration runs at the end of a build (lib/ingest/image_index.build_image_index) when a dataset has no
thresholds for its model or has grown or shrunk by RECALIBRATE_GROWTH since, and on demand
(find_duplicates.py DATASET --calibrate). It lives on the write side: it loads the model, generates
images and writes the thresholds beside the index set, where lib/serve only reads them.
"""
from __future__ import annotations

import logging
import random
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from lib.data.images import open_image
from lib.data.perceptual import NEAR_DISTANCE
from lib.data.variants import near_variants
from lib.errors import ClipSearchError, NotFoundError, UnreadableImageError
from lib.ingest.report import BuildReport
from lib.ingest.store_copy import copy_figures
from lib.model.encoder import ClipEncoder
from lib.settings import Settings
from lib.store.catalog import Catalog, ImageRecord
from lib.store.dataset_figures import DuplicateThresholds, load_thresholds, now, save_thresholds
from lib.store.files import room_on_disk
from lib.store.identity import ModelIdentity
from lib.store.index_files import dataset_vectors

log = logging.getLogger(__name__)

EDIT_PERCENTILE = 2.0
SMALL_LIBRARY = 200
MIN_DISTINCT_PAIRS = 200
DEFAULT_NEAR = 0.90  # with the signature check; light edits of a photo score 0.95+ with CLIP ViT-B/32
DEFAULT_SIMILAR = 0.96
EDIT_SIDE = 1024  # photos are reduced to this first: a 12 MP photo takes ~0.5 s per edit, to the same effect
DISTINCT_RATE = 0.001
MAX_DUPLICATE_SHARE = 0.1  # a library whose same-class pairs are more often copies than this is implausible
DISTINCT_SAMPLE = 2000  # images whose indexed vectors give the distinct pairs (no encoding needed)
RECALIBRATE_GROWTH = 2.0


def spread_sample(records: Sequence[ImageRecord], count: int, rng: random.Random) -> list[ImageRecord]:
    """Up to `count` images taken in turn from every partition, so that each class is represented."""
    by_partition = defaultdict(list)
    for record in records:
        by_partition[record.partition].append(record)
    for members in by_partition.values():
        rng.shuffle(members)
    queues = [by_partition[name] for name in sorted(by_partition)]
    picked = []
    for turn in range(max((len(q) for q in queues), default=0)):
        picked += [q[turn] for q in queues if turn < len(q)]
        if len(picked) >= count:
            break
    return picked[:count]


def _readable(root: Path, sample: Sequence[ImageRecord]) -> Iterator[Image.Image]:
    """The sampled images, reduced to at most EDIT_SIDE pixels a side; an unreadable one is logged and passed."""
    for record in sample:
        try:
            image = open_image(root / record.path)
        except UnreadableImageError as err:
            log.warning("calibration skips %s: %s", record.path, err)
            continue
        image.thumbnail((EDIT_SIDE, EDIT_SIDE), Image.Resampling.LANCZOS)
        yield image


def edit_scores(encoder: ClipEncoder, root: Path, sample: Sequence[ImageRecord], rng: random.Random,
                batch_size: int = 64) -> dict[str, list[float]]:
    """Per kind of edit, the cosine of each sampled image (encoded afresh) with its edited copy.

    Images are turned into model input as they are made, and encoded a batch at a time.
    """
    kinds: list[str] = []
    pixels: list[np.ndarray] = []
    vectors = []
    for image in _readable(root, sample):
        variants = near_variants(image, rng)
        kinds += ["", *(v.kind for v in variants)]
        pixels += [encoder.transform(i) for i in (image, *(v.image for v in variants))]
        while len(pixels) >= batch_size:
            vectors.append(encoder.encode_pixels(np.stack(pixels[:batch_size])))
            pixels = pixels[batch_size:]
    if pixels:
        vectors.append(encoder.encode_pixels(np.stack(pixels)))
    if not kinds:
        raise ClipSearchError(f"no image of the calibration sample could be read under {root}; is the dataset "
                              "folder still there?")
    scores: dict[str, list[float]] = defaultdict(list)
    embedded = np.concatenate(vectors)
    for row, kind in enumerate(kinds):
        if kind == "":
            original = embedded[row]
        else:
            scores[kind].append(float(embedded[row] @ original))
    return dict(scores)


def distinct_scores(sample: Sequence[ImageRecord], vectors: np.ndarray) -> np.ndarray:
    """Cosines of pairs of different images in one partition (of any two images where no partition has two)."""
    partitions = np.array([r.partition for r in sample])
    contents = np.array([r.sha256 for r in sample])
    upper = np.triu(np.ones((len(sample), len(sample)), bool), k=1) & (contents[:, None] != contents[None, :])
    same_class = upper & (partitions[:, None] == partitions[None, :])
    return (vectors @ vectors.T)[same_class if same_class.any() else upper]


def share_at_or_above(scores: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    ordered = np.sort(scores)
    return 1.0 - np.searchsorted(ordered, cuts, side="left") / len(ordered)


def duplicate_share(distinct: np.ndarray, edits: np.ndarray) -> float:
    """The estimated share of distinct pairs that are really duplicates: pairs above the median edit, doubled."""
    median = np.median(edits)
    return min(MAX_DUPLICATE_SHARE, float(share_at_or_above(distinct, np.array([median]))[0] / 0.5))


def distinct_cut(distinct: np.ndarray, edits: np.ndarray, share: float) -> float:
    """The lowest cosine above which at most DISTINCT_RATE of the truly distinct pairs lie, once the
    expected duplicates (`share` of the pairs, scoring like edits) are taken out."""
    cuts = np.unique(distinct)
    rate = (share_at_or_above(distinct, cuts) - share * share_at_or_above(edits, cuts)) / (1.0 - share)
    within = np.flatnonzero(rate <= DISTINCT_RATE)  # the first from below: the estimate is noisy near the top
    return float(cuts[within[0]]) if len(within) else float(cuts[-1])


def choose_thresholds(edits: np.ndarray, distinct: np.ndarray) -> tuple[float, float, float]:
    """(near, similar, estimated duplicate share of the distinct pairs) by the rule in the module docstring."""
    share = duplicate_share(distinct, edits)
    similar = distinct_cut(distinct, edits, share)
    return float(np.percentile(edits, EDIT_PERCENTILE)), similar, share


def _details(edits: dict[str, list[float]], distinct: np.ndarray, near: float, similar: float, share: float,
             images: int) -> dict:
    pooled = np.concatenate([np.asarray(v) for v in edits.values()])
    return {
        "images": images, "edited_images": len(next(iter(edits.values()))), "distinct_pairs": int(len(distinct)),
        "rule": f"similar: reached by {DISTINCT_RATE:.1%} of distinct same-class pairs, duplicates among them "
                f"taken out; near: p{EDIT_PERCENTILE:g} of light edits, and perceptual signatures that agree "
                f"(hashes within {NEAR_DISTANCE} bits, mean colour, brightness quantiles)",
        "edits": {kind: {"p5": round(float(np.percentile(v, 5)), 4), "median": round(float(np.median(v)), 4)}
                  for kind, v in edits.items()},
        "distinct": {name: round(float(np.percentile(distinct, q)), 4)
                     for name, q in (("median", 50), ("p99", 99), ("p99.9", 99.9), ("max", 100))},
        "edits_caught_by_near": round(float((pooled >= near).mean()), 4),
        "distinct_reaching_similar": round(float((distinct >= similar).mean()), 4),
        "duplicate_share_of_distinct_pairs": round(share, 4),
        "separable": bool(near > float(np.percentile(distinct, 100 - 100 * DISTINCT_RATE))),
    }


def calibrate_duplicates(indexes_dir: Path, dataset: str, encoder: ClipEncoder, sample_size: int = 48,
                         seed: int = 0) -> DuplicateThresholds:
    """Measure both distributions for `dataset`, choose the thresholds and record them beside its index set."""
    catalog = Catalog.in_folder(indexes_dir, readonly=True)
    try:
        record = catalog.dataset(dataset)
        if record is None:
            raise NotFoundError(f"unknown dataset {dataset!r}; build it first with build_image_index.py")
        encoder.identity.check_same(record.model, f"dataset {dataset!r}")
        ids, vectors = dataset_vectors(catalog, indexes_dir, dataset)
        records = {r.id: r for r in catalog.images(dataset) if r.media == "image" and not r.region}  # nor scenes
    finally:
        catalog.close()
    if len(records) < 2:
        raise ClipSearchError(f"dataset {dataset!r} has {len(records)} image(s); calibration needs at least two")
    if record.root is None:
        raise ClipSearchError(f"dataset {dataset!r} was imported from embeddings without --images-root: calibration "
                              "edits its images; import it again with --images-root, or give --near and --similar")
    rng = random.Random(seed)
    row = {int(i): n for n, i in enumerate(ids)}
    pool = [records[int(i)] for i in ids if int(i) in records]
    distinct_sample = spread_sample(pool, DISTINCT_SAMPLE, rng)
    distinct = distinct_scores(distinct_sample, vectors[[row[r.id] for r in distinct_sample]])
    if len(pool) < SMALL_LIBRARY or len(distinct) < MIN_DISTINCT_PAIRS:
        return default_thresholds(indexes_dir, dataset, record.model, len(pool), len(distinct))
    edits = edit_scores(encoder, record.root, spread_sample(pool, sample_size, rng), rng)
    near, similar, share = choose_thresholds(np.concatenate([np.asarray(v) for v in edits.values()]), distinct)
    thresholds = DuplicateThresholds(round(near, 4), round(similar, 4), record.model, now(),
                                     _details(edits, distinct, near, similar, share, len(pool)))
    save_thresholds(indexes_dir, dataset, thresholds)
    log.info("duplicate thresholds of %r: near %.4f, similar %.4f (%d edited images, %d distinct pairs)", dataset,
             thresholds.near, thresholds.similar, thresholds.details["edited_images"], len(distinct))
    return thresholds


def default_thresholds(indexes_dir: Path, dataset: str, model: ModelIdentity, images: int,
                       pairs: int) -> DuplicateThresholds:
    """The documented defaults, recorded for a library too small to calibrate on."""
    reason = (f"defaults for a small library (near {DEFAULT_NEAR}, similar {DEFAULT_SIMILAR}): {images} images and "
              f"{pairs} same-class pairs are too few to calibrate on (it takes {SMALL_LIBRARY} images)")
    thresholds = DuplicateThresholds(DEFAULT_NEAR, DEFAULT_SIMILAR, model, now(),
                                     {"defaults": True, "reason": reason, "images": images, "distinct_pairs": pairs})
    save_thresholds(indexes_dir, dataset, thresholds)
    log.info("duplicate thresholds of %r: %s", dataset, reason)
    return thresholds


def needs_calibration(indexes_dir: Path, dataset: str, encoder: ClipEncoder, images: int) -> bool:
    """True without thresholds for this model, or when the dataset has grown or shrunk a lot since."""
    recorded = load_thresholds(indexes_dir, dataset, encoder.identity)
    if recorded is None:
        return images >= 2
    before = max(1, int(recorded.details.get("images", 0)))
    return not (1 / RECALIBRATE_GROWTH <= images / before <= RECALIBRATE_GROWTH)


def calibrate_build(settings: Settings, encoder: ClipEncoder, report: BuildReport) -> None:
    """The duplicate thresholds of a built dataset, calibrated where they are missing or stale
    (above), after the build: its index is committed, and served, already. A failure, a full
    disk included, leaves only the thresholds missing, which find_duplicates.py calibrates on its first run."""
    images = report.added + report.changed + report.unchanged
    if not settings.calibration_images or not needs_calibration(settings.indexes_dir, report.dataset, encoder,
                                                                  images):
        return
    log.info("calibrating the duplicate thresholds of %r; its index is searchable already", report.dataset)
    try:
        with room_on_disk(settings.indexes_dir, lambda: f"{report.partitions_written} partitions committed"):
            report.thresholds = calibrate_duplicates(settings.indexes_dir, report.dataset, encoder,
                                                     settings.calibration_images)
    except ClipSearchError as err:  # a full disk included: the index is built, only the thresholds are missing
        log.warning("duplicate thresholds not calibrated: %s (find_duplicates.py %s --calibrate retries)", err,
                    report.dataset)
        return
    copy_figures(settings, report.dataset)
