"""Results with one scene per video (`group_videos`), so that one long video does not fill a page, and with one
entry per picture in a dataset built with --regions (its own row or a region's, whichever ranks first).

A ranked list keeps each video's first (best) scene and every picture. Keeping first occurrences is stable
under growing the list: the grouped list of a prefix is a prefix of the grouped list of a longer one, so
pages of grouped results continue each other exactly, as ungrouped ones do (lib/serve/ranking.py).
"""
from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence

import numpy as np

from lib.serve.ranking import Ranked
from lib.store.records import ImageRecord

VideosOf = Callable[[Sequence[int]], dict[int, Hashable]]  # ids -> the group of each id that has one


def entry_groups(records: Callable[[Sequence[int]], Mapping[int, ImageRecord]], videos: bool,
                 pictures: bool) -> VideosOf | None:
    """What a list keeps one entry of: each video's scenes (`videos`), and each picture's own row with its
    regions' (`pictures`, a dataset built with --regions); None when nothing is grouped."""
    if not (videos or pictures):
        return None

    def groups(ids: Sequence[int]) -> dict[int, Hashable]:
        return {i: (r.media, r.path) for i, r in records(ids).items()
                if (r.media == "video" and videos) or (r.media == "image" and pictures)}
    return groups


def one_per_video(scores: np.ndarray, ids: np.ndarray, videos_of: VideosOf) -> tuple[np.ndarray, np.ndarray]:
    """The results (best first) without the scenes of a video after its first one."""
    videos = videos_of(ids.tolist())
    if not videos:
        return scores, ids
    seen: set[Hashable] = set()
    keep = []
    for position, image_id in enumerate(ids.tolist()):
        video = videos.get(image_id)
        if video is not None:
            if video in seen:
                continue
            seen.add(video)
        keep.append(position)
    return scores[keep], ids[keep]


def grouped_list(grow: Callable[[int], Ranked], wanted: int, threshold: float | None,
                 videos_of: VideosOf) -> Ranked:
    """A query's ranked list grouped by video, grown (`grow(count)` gives at least `count` results, or all
    there are, and with a threshold all that reach it) until it holds `wanted` grouped results that reach
    `threshold`, or no more can come."""
    count = wanted
    while True:
        found = grow(count)
        scores, ids = one_per_video(found.scores, found.ids, videos_of)
        reached = len(ids) if threshold is None else int(np.searchsorted(-scores, -threshold, side="right"))
        below = threshold is not None and len(found) > 0 and float(found.scores[-1]) < threshold
        if reached >= wanted or found.complete or below or len(found) < count:
            return Ranked(scores, ids, found.complete, found.level, found.exact)
        count = max(2 * len(found), count + 1)
