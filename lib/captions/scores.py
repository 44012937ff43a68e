"""The scores of every row: its similarity, the rank of its caption among its image's captions, its z
against the whole set, and how much better the best caption that is not the image's own fits; and the
rows most likely mismatched.

`z` is robust: (similarity - median) / (1.4826 x MAD), over every scored row of the set, not per image
(an image has a handful of captions at most, too few for a spread of its own). The median absolute
deviation, scaled to equal the standard deviation of a normal distribution, is not pulled by the
mismatched rows the way a mean and standard deviation would be.

A row is an outlier when its z is at most -cut ("low score"), or when the best caption that is not its
image's own scores more than this row's caption and that gap is at least `cut` robust deviations above
the set's median gap ("another caption fits much better"); both give "both". Worst first: by the
larger of -z and the gap's z.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lib.captions.encode import EncodedPairs

ROBUST_SCALE = 1.4826  # MAD x this = the standard deviation, for normally distributed scores
CHUNK = 8192  # rows of vectors gathered at a time (2 x 8192 x dim floats)
LOW, BETTER, BOTH = "low score", "another caption fits much better", "both"


@dataclass(frozen=True)
class Distribution:
    """Median and robust spread of a set of values."""

    median: float
    spread: float

    @classmethod
    def of(cls, values: np.ndarray) -> Distribution:
        values = values[np.isfinite(values)]
        if len(values) == 0:
            return cls(float("nan"), float("nan"))
        median = float(np.median(values))
        return cls(median, max(ROBUST_SCALE * float(np.median(np.abs(values - median))), 1e-6))

    def z(self, values: np.ndarray) -> np.ndarray:
        return ((values - self.median) / self.spread).astype(np.float32)

    def value_at(self, z: float) -> float:
        return self.median + z * self.spread


@dataclass
class Pairs:
    """The distinct (image, caption) pairs of the scored rows, and which pair each scored row is."""

    images: np.ndarray  # int64 image id per pair
    captions: np.ndarray  # int64 caption id per pair
    similarity: np.ndarray  # float32 cosine per pair
    rank: np.ndarray  # int32 rank of the caption among its image's captions, 1 = best
    rows: np.ndarray  # the scored rows
    row_pair: np.ndarray  # pair index of each scored row


def cosine(left: np.ndarray, right: np.ndarray, left_ids: np.ndarray, right_ids: np.ndarray) -> np.ndarray:
    """left[left_ids[i]] . right[right_ids[i]] for every i, a chunk at a time."""
    out = np.empty(len(left_ids), dtype=np.float32)
    for start in range(0, len(left_ids), CHUNK):
        end = start + CHUNK
        out[start:end] = np.einsum("ij,ij->i", left[left_ids[start:end]], right[right_ids[start:end]])
    return out


def rank_in_groups(groups: np.ndarray, values: np.ndarray) -> np.ndarray:
    """1 + how many members of the same group have a strictly higher value (ties share the better rank)."""
    order = np.lexsort((-values, groups))
    g, v = groups[order], values[order]
    position = np.arange(len(order))
    group_start = np.maximum.accumulate(np.where(np.r_[True, g[1:] != g[:-1]], position, 0))
    run_start = np.maximum.accumulate(np.where(np.r_[True, (g[1:] != g[:-1]) | (v[1:] != v[:-1])], position, 0))
    rank = np.empty(len(order), dtype=np.int32)
    rank[order] = run_start - group_start + 1
    return rank


def score_pairs(encoded: EncodedPairs) -> Pairs:
    rows = np.flatnonzero(encoded.scored())
    count = max(len(encoded.captions), 1)
    keys, row_pair = np.unique(encoded.image_ids[rows].astype(np.int64) * count + encoded.caption_ids[rows],
                               return_inverse=True)
    images, captions = keys // count, keys % count
    similarity = cosine(encoded.image_vectors, encoded.caption_vectors, images, captions)
    return Pairs(images, captions, similarity, rank_in_groups(images, similarity), rows, row_pair)


@dataclass
class RowScores:
    """Per row (nan or 0 where the row has no score), and the distributions the cut-offs come from."""

    similarity: np.ndarray  # float32
    rank: np.ndarray  # int32
    z: np.ndarray  # float32
    gap: np.ndarray  # float32: best other caption's score - similarity
    scores: Distribution
    gaps: Distribution


def row_scores(encoded: EncodedPairs, pairs: Pairs, best_score: np.ndarray) -> RowScores:
    """Spread the pair scores over the rows; z and the gap to the best other caption of each row's image."""
    similarity = np.full(encoded.rows, np.nan, dtype=np.float32)
    rank = np.zeros(encoded.rows, dtype=np.int32)
    similarity[pairs.rows] = pairs.similarity[pairs.row_pair]
    rank[pairs.rows] = pairs.rank[pairs.row_pair]
    gap = np.full(encoded.rows, np.nan, dtype=np.float32)
    gap[pairs.rows] = best_score[encoded.image_ids[pairs.rows]] - similarity[pairs.rows]
    scores, gaps = Distribution.of(similarity), Distribution.of(gap)
    return RowScores(similarity, rank, scores.z(similarity), gap, scores, gaps)


@dataclass
class Outliers:
    rows: np.ndarray  # worst first
    reasons: list[str]
    low_cutoff: float  # similarity at or below which a row is a low score
    gap_cutoff: float  # how much better another caption must fit


def find_outliers(scores: RowScores, cut: float, limit: int) -> Outliers:
    """The rows past either cut-off (`cut` robust deviations), worst first, at most `limit` of them."""
    low = scores.z <= -cut
    gap_cutoff = max(scores.gaps.value_at(cut), 0.0)
    better = (scores.gap > 0) & (scores.gap >= gap_cutoff)
    badness = np.fmax(np.where(low, -scores.z, -np.inf), np.where(better, scores.gaps.z(scores.gap), -np.inf))
    flagged = np.flatnonzero(low | better)
    if len(flagged) > limit:
        flagged = flagged[np.argpartition(-badness[flagged], limit - 1)[:limit]] if limit > 0 else flagged[:0]
    flagged = flagged[np.argsort(-badness[flagged], kind="stable")]
    reasons = [BOTH if low[r] and better[r] else LOW if low[r] else BETTER for r in flagged]
    return Outliers(flagged, reasons, scores.scores.value_at(-cut), gap_cutoff)
