"""One scoring run from start to end: read and encode (pass one), score, search for better captions and
images, write output.csv (pass two), outliers.csv, suggestions.csv, the figures and report.html.

Memory is the vectors of the distinct images and captions, their strings, a few numbers per row and
one chunk of rows; never an images x captions matrix (lib/captions/search.py).
"""
from __future__ import annotations

import math
import resource
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from lib.captions.encode import EncodedPairs, encode_pairs
from lib.captions.illustrate import draw_figures, outlier_entries
from lib.captions.options import ScoreOptions
from lib.captions.outputs import (
    SUGGESTION_COLUMNS,
    BestOther,
    SuggestionWriter,
    staged_csv,
    write_outliers,
    write_output,
)
from lib.captions.pairs import PairsSource
from lib.captions.report import write_report
from lib.captions.scores import Pairs, find_outliers, row_scores, score_pairs
from lib.captions.search import OwnGroups, top_others
from lib.captions.timing import Stopwatch
from lib.model.encoder import ClipEncoder

REPORT_OUTLIERS = 50


def peak_memory_mib() -> tuple[float, float]:
    """Peak resident memory of this process and of its largest finished child (a decode worker), in MiB.

    Our own peak is the kernel's high-water mark of this address space (VmHWM), not ``ru_maxrss``: Linux
    carries ``ru_maxrss`` over an exec, so a run started by a large parent (a test session with models
    loaded: 1,327 MiB seen in CI) would report the parent's peak as its own.
    """
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    try:
        with open("/proc/self/status") as status:
            own = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration, ValueError):
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return own, children


def model_summary(encoder: ClipEncoder, image_embeddings: Path | None) -> dict[str, Any]:
    """The model's identity and the preprocessing of images and captions, as recorded in every output."""
    transform = encoder.transform
    images = (f"read from {image_embeddings} (clip-retrieval embeddings)" if image_embeddings else
              f"RGB, short side resized to {transform.size} px (bicubic), centre crop {transform.crop_height}x"
              f"{transform.crop_width}, normalised with mean {list(transform.mean)} and std {list(transform.std)}")
    return {"model": {**encoder.identity.to_dict(), "backend": encoder.backend, "precision": encoder.precision},
            "preprocessing": {"images": images, "captions": "encoded as written (no prompt template), "
                              "whitespace collapsed; identical captions encoded once",
                              "similarity": "cosine of L2-normalised embeddings"}}


def _pool_of_readable(encoded: EncodedPairs) -> tuple[np.ndarray, np.ndarray]:
    """The ids of the images that have a vector, and those vectors (a copy only when some are missing)."""
    readable = np.setdiff1d(np.arange(len(encoded.images)), np.fromiter(encoded.image_errors, dtype=np.int64))
    if len(readable) == len(encoded.images):
        return readable, encoded.image_vectors
    return readable, np.ascontiguousarray(encoded.image_vectors[readable])


def search_others(encoded: EncodedPairs, pairs: Pairs, suggestions: SuggestionWriter | None, k: int,
                  progress: bool) -> BestOther:
    """The best caption of the pool that is not its own for every image; with `suggestions`, the k best
    captions of each image and the k best images of each caption written there as they come."""
    readable, image_pool = _pool_of_readable(encoded)
    best = BestOther.empty(len(encoded.images))
    image_groups = OwnGroups.from_pairs(pairs.images, pairs.captions, len(encoded.images), len(encoded.captions))
    with tqdm(total=len(readable), desc="best other captions", unit=" img", disable=not progress) as bar:
        for top in top_others(encoded.image_vectors, readable, encoded.caption_vectors, image_groups, k):
            best.caption[top.queries], best.score[top.queries] = top.ids[:, 0], top.scores[:, 0]
            if suggestions is not None:
                suggestions.add(top, "image")
            bar.update(len(top.queries))
    if suggestions is not None and len(readable):
        compact = np.full(len(encoded.images), -1, dtype=np.int64)
        compact[readable] = np.arange(len(readable))
        caption_groups = OwnGroups.from_pairs(pairs.captions, compact[pairs.images], len(encoded.captions),
                                              len(readable))
        every_caption = np.arange(len(encoded.captions))
        for top in tqdm(top_others(encoded.caption_vectors, every_caption, image_pool, caption_groups, k),
                        desc="suggesting images", unit=" batches", disable=not progress):
            suggestions.add(top._replace(ids=np.where(top.ids >= 0, readable[np.maximum(top.ids, 0)], -1)),
                            "caption")
    return best


def score_captions(source: PairsSource, encoder: ClipEncoder, batch_size: int, num_workers: int,
                   options: ScoreOptions, started: float | None = None) -> dict[str, Any]:
    """Run everything and return the summary (also in report.html); `started` is when the caller began."""
    started = time.perf_counter() if started is None else started
    out = options.out_dir
    out.mkdir(parents=True, exist_ok=True)
    embeddings = options.image_embeddings or (source.path if source.kind == "embeddings" else None)
    clock = Stopwatch()
    encoded = encode_pairs(source, encoder, options.images_dir, embeddings, batch_size, num_workers,
                           options.chunk_rows, options.progress, clock, options.videos)
    with clock.phase("search"), ExitStack() as stack:
        pairs = score_pairs(encoded)
        suggestions = (SuggestionWriter(stack.enter_context(staged_csv(out / "suggestions.csv", SUGGESTION_COLUMNS)),
                                        encoded) if options.suggest else None)
        best = search_others(encoded, pairs, suggestions, max(1, options.suggest), options.progress)
        scores = row_scores(encoded, pairs, best.score)
        outliers = find_outliers(scores, options.cut, options.outliers)
    with clock.phase("write"):
        originals = write_output(source, encoded, scores, best, out / "output.csv", options.chunk_rows,
                                 set(outliers.rows.tolist()), options.progress)
        write_outliers(out / "outliers.csv", outliers, originals, encoded, scores, best)
    with clock.phase("figures and report"):
        figures = draw_figures(encoded, pairs, scores, outliers, options)
        entries = outlier_entries(outliers, originals, encoded, scores, best, options, REPORT_OUTLIERS)
    summary = {
        "input": str(source.path), "out_dir": str(out), "rows": encoded.rows, "scored": len(pairs.rows),
        "errors": encoded.rows - len(pairs.rows), "distinct_images": len(encoded.images),
        "distinct_captions": len(encoded.captions), "unreadable_images": len(encoded.image_errors),
        "own_caption_best": int((scores.gap < 0).sum()),
        "median_similarity": scores.scores.median, "robust_spread": scores.scores.spread,
        "low_score_cutoff": outliers.low_cutoff, "gap_cutoff": outliers.gap_cutoff,
        "cutoff_rule": f"similarity <= median - {options.cut:g} x 1.4826 x MAD = {outliers.low_cutoff:.4f}; or best "
                       f"other caption ahead by >= median gap + {options.cut:g} x its robust spread = "
                       f"{outliers.gap_cutoff:.4f}",
        "outliers": len(outliers.rows), "suggestions": suggestions.written if suggestions else 0,
        **model_summary(encoder, embeddings), "seconds": clock.seconds,
    }
    peak, workers = peak_memory_mib()
    summary.update(wall_time_s=round(time.perf_counter() - started, 2), peak_memory_mib=round(peak, 1),
                   workers_peak_memory_mib=round(workers, 1))
    write_report(out / "report.html", summary, figures, entries)
    return {key: None if isinstance(value, float) and math.isnan(value) else value for key, value in summary.items()}
