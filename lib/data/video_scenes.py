"""A video's sampled frames grouped into scenes by their embeddings: a cut where consecutive frames' cosine
falls below a threshold, each scene one entry with its start, its end and one vector.

The representative vector is that of the scene's medoid frame (the one closest to the scene's mean), so that
a hit's thumbnail, its stored vector and "more like this" all come from one real frame.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CUT_COSINE = 0.8  # placeholder until calibrated on generated cuts (bench.video_speed)


@dataclass(frozen=True)
class Scene:
    start_s: float
    end_s: float
    frame: int  # the index, among the sampled frames, of the frame that stands for the scene
    vector: np.ndarray


@dataclass(frozen=True)
class VideoFrames:
    """What a decoder worker hands on besides the frames' pixels: their times, each frame's perceptual
    signature (lib/data/perceptual.py) and the video's length."""

    times: list[float]
    signatures: list[bytes]
    duration_s: float


@dataclass(frozen=True)
class VideoScene:
    """One scene as the catalog records it: its span, the moment of its frame, that frame's vector and signature."""

    start_s: float
    end_s: float
    frame_s: float
    vector: np.ndarray
    perceptual_hash: bytes


def cut_points(vectors: np.ndarray, cut_cosine: float = CUT_COSINE) -> list[int]:
    """The indexes of the frames that start a new scene (0 always does): where a frame's cosine to the one
    before falls below `cut_cosine`. Vectors are L2-normalised, one per sampled frame, in time order."""
    if not len(vectors):
        return []
    similarity = np.einsum("ij,ij->i", vectors[1:], vectors[:-1])
    return [0] + [int(i) + 1 for i in np.flatnonzero(similarity < cut_cosine)]


def scenes_of(times: list[float], vectors: np.ndarray, duration_s: float,
              cut_cosine: float = CUT_COSINE) -> list[Scene]:
    """The scenes of a video from its sampled frames (times in seconds, L2-normalised vectors): each from its
    first frame's time (0 for the first scene) to the next scene's start (the video's end for the last)."""
    starts = cut_points(vectors, cut_cosine)
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


def video_scenes(frames: VideoFrames, vectors: np.ndarray) -> list[VideoScene]:
    """The scenes of a sampled video as catalog entries."""
    return [VideoScene(scene.start_s, scene.end_s, frames.times[scene.frame], scene.vector,
                       frames.signatures[scene.frame])
            for scene in scenes_of(frames.times, vectors, frames.duration_s)]
