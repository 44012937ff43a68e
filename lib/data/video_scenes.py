"""A video's sampled frames grouped into scenes by their embeddings, each scene one entry with its start, its
end and one vector.

A cut is where the embedding jumps: the cosine distance (1 - cosine) between a sampled frame and the one
before is at least `min_distance`, and at least `ratio` times the usual distance around it, the second
smallest of the `NEIGHBOURS` pairs on each side (as many on one side near an end). Not their median: two
short scenes in a row put a cut at every other pair and raise the median to the cuts' own size. The test
is relative because the scale of a jump is the model's and the footage's: the demo model moves 0.02-0.15 a
second within a panned scene of drawn shapes and 0.55-0.8 at its cuts, while ViT-B/32 with random weights
packs everything close (cuts at 0.002-0.08, 0.0005 within scenes); no fixed cosine serves both (0.8, the
first guess, found no cut of photo-like scenes at all). bench.video_speed's calibration grid (docs/
benchmarks.md) chose the defaults: on 16 minutes of generated video with 158 hard cuts, half of the videos
with a keyframe at each cut and half with a fixed GOP, ViT-B/32 finds 0.96 (photo-like scenes) and 0.91
(drawn shapes) of the cuts within 1 s with no false cut, and the demo model 0.99 of those between the
drawings it was trained on, with 1.4 false cuts a minute.

Half the sampled frames are embedded at first (every other one), then each one between two embedded frames
at least `min_distance` apart (a cut may lie between them): so a cut is still placed to the sampled frame,
while the model, which costs more than the decoding on 2 cores (ViT-B/32: 38 frames/s against 85 s of 720p
video decoded a second), sees about half the frames of footage that holds still.

The representative vector is that of the scene's medoid frame (the one closest to the scene's mean), so that
a hit's thumbnail, its stored vector and "more like this" all come from one real frame.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from lib.data.perceptual import signature

NEIGHBOURS = 2  # pairs on each side of a jump among which its usual distance is read


@dataclass(frozen=True)
class CutRule:
    """Where consecutive sampled frames belong to different scenes (see the module's docstring)."""

    min_distance: float = 0.002
    ratio: float = 5.0

    def __str__(self) -> str:
        return f"distance >= {self.min_distance:g} and >= {self.ratio:g}x the usual around it"


CUT_RULE = CutRule()


@dataclass(frozen=True)
class Scene:
    start_s: float
    end_s: float
    frame: int  # the index, among the sampled frames, of the frame that stands for the scene
    vector: np.ndarray


@dataclass(frozen=True)
class VideoFrames:
    """What a decoder worker hands on besides the frames' crops: their times, the video's length, and the
    frames reduced for the perceptual signature (lib/data/perceptual.py), hashed only for the frames that
    stand for scenes (11 hashes a frame, 6 ms: they had cost a 720p video more than its keyframes' decoding),
    or the signatures themselves where a Ray task computed them all."""

    times: list[float]
    duration_s: float
    reduced: list[np.ndarray] = field(default_factory=list)  # RGB, as perceptual.reduced gives them
    signatures: list[bytes] = field(default_factory=list)

    def signature(self, i: int) -> bytes:
        return self.signatures[i] if self.signatures else signature(Image.fromarray(self.reduced[i]))

    def all_signatures(self) -> list[bytes]:
        return [self.signature(i) for i in range(len(self.times))]


@dataclass(frozen=True)
class VideoScene:
    """One scene as the catalog records it: its span, the moment of its frame, that frame's vector and signature."""

    start_s: float
    end_s: float
    frame_s: float
    vector: np.ndarray
    perceptual_hash: bytes


def frame_distances(vectors: np.ndarray) -> np.ndarray:
    """1 - cosine between each sampled frame and the one before (L2-normalised vectors, in time order)."""
    return 1.0 - np.einsum("ij,ij->i", vectors[1:], vectors[:-1]) if len(vectors) > 1 else np.zeros(0)


def cut_points(vectors: np.ndarray, rule: CutRule = CUT_RULE) -> list[int]:
    """The indexes of the frames that start a new scene (0 always does)."""
    if not len(vectors):
        return []
    distance = frame_distances(vectors)
    starts = [0]
    for i, jump in enumerate(distance):
        first = max(0, min(i - NEIGHBOURS, len(distance) - 1 - 2 * NEIGHBOURS))  # as many near an end
        around = np.delete(distance[first:first + 2 * NEIGHBOURS + 1], i - first)
        usual = float(np.partition(around, 1)[1]) if len(around) > 2 else float(around.min(initial=0.0))
        if jump >= rule.min_distance and jump >= rule.ratio * usual:
            starts.append(i + 1)
    return starts


def embedded_frames(count: int, embed: Callable[[Sequence[int]], np.ndarray],
                    rule: CutRule = CUT_RULE) -> tuple[list[int], np.ndarray]:
    """Which of a video's `count` sampled frames are embedded, in order, and their vectors: every other one
    and the last, then each one between two of those that may lie on either side of a cut. `embed` gets
    the indexes of frames to embed and returns their L2-normalised vectors."""
    if count <= 2:
        return list(range(count)), embed(list(range(count)))
    coarse = list(range(0, count, 2)) + ([count - 1] if count % 2 == 0 else [])
    vectors = embed(coarse)
    moved = np.flatnonzero(frame_distances(vectors) >= rule.min_distance)
    between = [coarse[k] + 1 for k in moved if coarse[k + 1] - coarse[k] == 2]
    if not between:
        return coarse, vectors
    order = np.argsort(coarse + between, kind="stable")
    return sorted(coarse + between), np.concatenate([vectors, embed(between)])[order]


def scenes_of(times: list[float], vectors: np.ndarray, duration_s: float,
              rule: CutRule = CUT_RULE) -> list[Scene]:
    """The scenes of a video from its sampled frames (times in seconds, L2-normalised vectors): each from its
    first frame's time (0 for the first scene) to the next scene's start (the video's end for the last)."""
    starts = cut_points(vectors, rule)
    scenes = []
    for n, first in enumerate(starts):
        last = starts[n + 1] if n + 1 < len(starts) else len(times)
        members = vectors[first:last]
        mean = members.mean(axis=0)
        medoid = first + int(np.argmax(members @ mean))
        start = 0.0 if n == 0 else float(times[first])
        end = float(times[last]) if last < len(times) else max(duration_s, float(times[-1]))
        scenes.append(Scene(start, end, medoid, vectors[medoid]))
    return scenes


def video_scenes(frames: VideoFrames, embed: Callable[[Sequence[int]], np.ndarray]) -> list[VideoScene]:
    """The scenes of a sampled video as catalog entries, its frames embedded by `embed` as embedded_frames
    says."""
    indexes, vectors = embedded_frames(len(frames.times), embed)
    times = [frames.times[i] for i in indexes]
    return [VideoScene(scene.start_s, scene.end_s, times[scene.frame], scene.vector,
                       frames.signature(indexes[scene.frame]))
            for scene in scenes_of(times, vectors, frames.duration_s)]
