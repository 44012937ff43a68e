"""A whole dataset grouped into duplicates in three tiers, each group with the image to keep and the bytes to free.

Three nested levels over the dataset's images:
- exact: byte-identical files (one SHA-256, from the catalog);
- near: the same picture re-encoded, resized, lightly cropped or recoloured: a cosine >= `near` to the
  group's keeper, perceptual signatures of the pixels that agree (lib/data/perceptual.py, from the
  catalog) and then, for a pair that passed both, the two files' pixels laid onto each other
  (lib/data/aligned_pixels.py, read by the caller: duplicate_finder.PixelMatcher);
- similar: a burst, a re-take of the same scene: a cosine >= `similar` to the group's keeper.
Each group of a level is made of whole groups of the level below (its *units*, each stood for by its
keeper), gathered around a keeper rather than chained: every member passed its tier's check against the
keeper itself, so no pair below a tier's threshold is shown in it (join_to_keepers). A level reports a
group where it joins two units or more, so an image is a non-keeper in at most one group, and deleting
every non-keeper leaves exactly one image of each set of related pictures. Nothing here deletes
anything: the groups are a suggestion for a person to review.
"""
from __future__ import annotations

import csv
import functools
import io
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from lib.data.perceptual import NEAR_DISTANCE as NEAR_DISTANCE  # re-exported: the answers say it
from lib.data.perceptual import Signatures
from lib.errors import NotCalibratedError
from lib.serve.neighbours import ClosePairs
from lib.store.catalog import ImageRecord
from lib.store.dataset_figures import DuplicateThresholds
from lib.store.files import write_atomic
from lib.store.names import shown_moment

TIERS = ("exact", "near", "similar")
CSV_HEADER = ("group", "tier", "keep", "path", "bytes", "score")


@dataclass(frozen=True)
class GroupMember:
    id: int
    path: str
    bytes: int
    width: int
    height: int
    score: float  # cosine to the group's keeper
    keep: bool
    media: str = "image"  # "video" for a scene of a video, which has its span (seconds) too
    video_start: float | None = None
    video_end: float | None = None


@dataclass(frozen=True)
class DuplicateGroup:
    number: int
    tier: str
    members: tuple[GroupMember, ...]  # the keeper first, then by score

    @property
    def keeper(self) -> GroupMember:
        return self.members[0]

    @property
    def bytes_freed(self) -> int:
        return sum(member.bytes for member in self.members if not member.keep)


@dataclass(frozen=True)
class TierTotal:
    groups: int
    images: int
    bytes_freed: int


@dataclass(frozen=True)
class DuplicateReport:
    dataset: str
    thresholds: DuplicateThresholds
    groups: list[DuplicateGroup]
    paths: list[str]  # of every image searched, in the order of `levels`
    levels: dict[str, np.ndarray]  # per tier, the component of every image

    def totals(self) -> dict[str, TierTotal]:
        return {tier: TierTotal(len(found), sum(len(g.members) for g in found), sum(g.bytes_freed for g in found))
                for tier in TIERS for found in [[g for g in self.groups if g.tier == tier]]}

    def components_by_path(self) -> dict[str, dict[str, int]]:
        """Per tier, the component of each image that has company at the similar tier (the loosest)."""
        similar = self.levels["similar"]
        grouped = np.bincount(similar)[similar] > 1
        return {tier: {self.paths[i]: int(labels[i]) for i in np.flatnonzero(grouped)}
                for tier, labels in self.levels.items()}


def resolve_thresholds(recorded: DuplicateThresholds | None, dataset: str, near: float | None = None,
                       similar: float | None = None) -> DuplicateThresholds:
    """The calibrated thresholds with the ones given in their place; both must be known one way or the other."""
    if recorded is None:
        if near is None or similar is None:
            raise NotCalibratedError(f"dataset {dataset!r} has no calibrated duplicate thresholds for the model "
                                     f"in use; run find_duplicates.py {dataset} --calibrate, or give both near and "
                                     "similar")
        return DuplicateThresholds(near, similar, None, "", {"given": True})
    if near is None and similar is None:
        return recorded
    near = recorded.near if near is None else near
    similar = recorded.similar if similar is None else similar
    return DuplicateThresholds(near, similar, recorded.model, "", {"given": True, "calibrated": recorded.to_dict()})


def keeper_ranks(records: Sequence[ImageRecord], taken_ns: np.ndarray | None = None) -> np.ndarray:
    """Rank 0 is the best image to keep: most pixels, then earliest capture, then shortest path.

    `taken_ns` is each image's capture time; without it, the file's modification time from the catalog.
    """
    taken = np.array([r.mtime_ns for r in records], np.int64) if taken_ns is None else taken_ns
    order = sorted(range(len(records)), key=lambda i: (-records[i].width * records[i].height, int(taken[i]),
                                                       len(records[i].path), records[i].path, records[i].id))
    ranks = np.empty(len(records), np.int64)
    ranks[order] = np.arange(len(records))
    return ranks


def components(count: int, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    graph = coo_matrix((np.ones(len(first), np.int8), (first, second)), shape=(count, count))
    return connected_components(graph, directed=False)[1]


def _chain(groups: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Edges that link each list of positions into one component (each to the next)."""
    if not groups:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate([g[:-1] for g in groups]), np.concatenate([g[1:] for g in groups])


def join_to_keepers(labels: np.ndarray, ranks: np.ndarray, first: np.ndarray, second: np.ndarray,
                    accept: Callable[[int, int], bool]) -> np.ndarray:
    """Units (the images that share a label) joined into groups around a keeper, never by chaining.

    Each unit is stood for by its best-ranked image. In rank order, a unit not yet taken becomes a keeper
    and takes every untaken unit that a pair (first, second) links it to and that `accept(keeper, other)`
    admits (both stand-ins, positions); so every member of a group passed the check against its keeper.
    """
    units = int(labels.max()) + 1 if len(labels) else 0
    by_rank = np.argsort(ranks)
    stand_in = np.full(units, -1, np.int64)
    stand_in[labels[by_rank[::-1]]] = by_rank[::-1]  # the last write for a label is its best-ranked image
    a, b = labels[first], labels[second]
    linked: dict[int, set[int]] = defaultdict(set)
    for x, y in zip(a[a != b].tolist(), b[a != b].tolist(), strict=True):
        linked[x].add(y)
        linked[y].add(x)
    joined, taken = np.arange(units), np.zeros(units, bool)
    for unit in sorted(range(units), key=lambda u: ranks[stand_in[u]]):
        if taken[unit]:
            continue
        taken[unit] = True
        for other in sorted(linked.get(unit, ()), key=lambda u: ranks[stand_in[u]]):
            if not taken[other] and accept(int(stand_in[unit]), int(stand_in[other])):
                joined[other], taken[other] = unit, True
    return joined[labels] if units else labels


PixelCheck = Callable[[int, int], bool]  # whether two images (positions) show the same pixels once aligned


def pixel_check(records: Sequence[ImageRecord], same_pixels: Callable[[ImageRecord, ImageRecord], bool]) -> PixelCheck:
    """`same_pixels` on positions, asked once per pair whichever way round (it may read two files)."""

    @functools.cache
    def ordered(low: int, high: int) -> bool:
        return same_pixels(records[low], records[high])

    return lambda first, second: ordered(min(first, second), max(first, second))


def tier_pairs(signatures: Signatures, pairs: ClosePairs, thresholds: DuplicateThresholds,
               pixels: PixelCheck | None = None) -> dict[str, np.ndarray]:
    """Per tier, which of the pairs could link at it: near needs the cosine, the perceptual signatures and
    then (only for a pair that passed both: it may read files) `pixels`; similar the cosine alone."""
    near = (pairs.score >= thresholds.near) & signatures.same_picture(pairs.first, pairs.second)
    if pixels is not None:
        near[near] = [pixels(int(a), int(b)) for a, b in zip(pairs.first[near], pairs.second[near], strict=True)]
    return {"near": near, "similar": pairs.score >= thresholds.similar}


def tier_levels(records: Sequence[ImageRecord], vectors: np.ndarray, ranks: np.ndarray,
                same_content: list[np.ndarray], pairs: ClosePairs, thresholds: DuplicateThresholds,
                signatures: Signatures, candidates: dict[str, np.ndarray],
                pixels: PixelCheck | None = None) -> dict[str, np.ndarray]:
    """The group of every image at each tier (a label per image), each tier's groups made of the last one's.

    near: cosine >= near to the group's keeper and pixels that agree with its (Signatures.same_picture, then
    `pixels`; an image without a signature is never near); similar: cosine >= similar to the keeper.
    `candidates` are tier_pairs' masks: the pairs that may link at each tier.
    """
    exact_first, exact_second = _chain(same_content)
    levels = {"exact": components(len(records), exact_first, exact_second)}

    def near(keeper: int, other: int) -> bool:
        return bool(vectors[keeper] @ vectors[other] >= thresholds.near
                    and signatures.same_picture(np.array([keeper]), np.array([other]))[0]
                    and (pixels is None or pixels(keeper, other)))

    def similar(keeper: int, other: int) -> bool:
        return bool(vectors[keeper] @ vectors[other] >= thresholds.similar)

    below = levels["exact"]
    for tier, accept in (("near", near), ("similar", similar)):
        close = candidates[tier]
        below = levels[tier] = join_to_keepers(below, ranks, pairs.first[close], pairs.second[close], accept)
    return levels


def _group(tier: str, positions: np.ndarray, records: Sequence[ImageRecord], vectors: np.ndarray) -> DuplicateGroup:
    scores = vectors[positions] @ vectors[positions[0]]
    order = [0, *sorted(range(1, len(positions)), key=lambda i: -scores[i])]
    members = tuple(GroupMember(r.id, r.path, r.bytes, r.width, r.height, round(float(scores[i]), 6), i == 0,
                                 **r.media_fields())
                    for i in order for r in [records[positions[i]]])
    return DuplicateGroup(0, tier, members)


def group_duplicates(dataset: str, records: Sequence[ImageRecord], vectors: np.ndarray, same_content: list[np.ndarray],
                     pairs: ClosePairs, thresholds: DuplicateThresholds,
                     capture_times: Callable[[list[ImageRecord]], np.ndarray] | None = None,
                     same_pixels: Callable[[ImageRecord, ImageRecord], bool] | None = None) -> DuplicateReport:
    """Group images (records and vectors in one order; same_content and pairs as positions in it) into tiers.

    `capture_times` gives the capture time (ns) of the images the keeper is chosen among (those in a
    group only, since reading them may mean opening files); without it, their modification times.
    `same_pixels` is the near tier's last check, made only for pairs that passed the cosine and the
    signatures (it reads the two files: duplicate_finder.PixelMatcher); without it, the signatures decide.
    """
    signatures = Signatures([r.perceptual_hash for r in records])
    pixels = pixel_check(records, same_pixels) if same_pixels is not None else None
    candidates = tier_pairs(signatures, pairs, thresholds, pixels)
    taken = np.array([r.mtime_ns for r in records], np.int64)
    if capture_times is not None:  # only images that may be grouped: a pair that can link them, or their bytes
        able = candidates["near"] | candidates["similar"]
        linked = np.unique(np.concatenate([pairs.first[able], pairs.second[able], *same_content]).astype(np.int64))
        if len(linked):
            taken[linked] = capture_times([records[int(i)] for i in linked])
    ranks = keeper_ranks(records, taken)
    levels = tier_levels(records, vectors, ranks, same_content, pairs, thresholds, signatures, candidates, pixels)
    units = np.arange(len(records))
    groups = []
    for tier in TIERS:
        labels = levels[tier]
        ordered = units[np.lexsort((ranks[units], labels[units]))]
        starts = np.flatnonzero(np.r_[True, labels[ordered][1:] != labels[ordered][:-1]])
        ends = np.r_[starts[1:], len(ordered)]
        groups += [_group(tier, ordered[s:e], records, vectors) for s, e in zip(starts, ends, strict=True) if e - s > 1]
        units = ordered[starts]  # the keeper of each component stands for it at the next tier
    groups.sort(key=lambda g: (TIERS.index(g.tier), -g.bytes_freed, g.keeper.path))
    numbered = [DuplicateGroup(n, g.tier, g.members) for n, g in enumerate(groups, 1)]
    return DuplicateReport(dataset, thresholds, numbered, [r.path for r in records], levels)


def csv_text(groups: Sequence[DuplicateGroup]) -> str:
    """One row per image in a group: group,tier,keep,path,bytes,score (path relative to the dataset root, escaped
    as lib/store/names.shown does, so that any name fits on one row and in UTF-8; a scene's with its span)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for group in groups:
        writer.writerows((group.number, group.tier, int(m.keep), shown_moment(m.path, m.video_start, m.video_end),
                          m.bytes, f"{m.score:.6f}") for m in group.members)
    return buffer.getvalue()


def write_csv(groups: Sequence[DuplicateGroup], path: Path) -> Path:
    return write_atomic(csv_text(groups).encode(), path)
