#!/usr/bin/env python3
"""Videos: how fast a folder of them is indexed, and how well their scenes are cut.

  speed       build_image_index on generated H.264 videos in MP4 (30 fps, a keyframe every second as phones
              write them), 720p and 1080p, per model: seconds of video indexed per wall-clock second with the
              default backend and the model loaded first; beside it the decode alone (sample_frames, one
              video after another) and the model's forward alone, in the same units
  cuts        on generated videos with hard cuts at known times (photo-like scenes, and drawings of the
              synthetic classes, panned, with grain; half with x264's keyframes at the cuts, half with a
              fixed GOP as phones write), frames embedded as the build embeds them: the share of cuts
              with a scene starting within 1 s, and the false cuts per minute, for the default cut rule and
              a grid around it (the calibration of lib/data/video_scenes.py)
  scenedetect PySceneDetect's ContentDetector (every frame decoded by OpenCV) on the same videos and on the
              speed table's, when installed:
              the same two figures and its seconds of compute per second of video, beside ours (which costs
              the index nothing more: the frames are decoded and embedded for it anyway)
Targets (issue 25, 2 cores): >= 30x real time at 720p and >= 15x at 1080p with ViT-B/32; >= 90 % of the cuts
found within 1 s.

    flock -w 3600 /tmp/clipsearch-cpu.lock .venv/bin/python -m bench.video_speed

Generated videos are kept in the workspace's cache (cache/bench-videos), so a second run does not write them
again. --smoke: 320x240 videos of a few seconds, the demo model only.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import random
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from bench import SmokeParser, link_model_cache
from bench.encode_speed import cpu_features, forward_rate
from lib.cli import run
from lib.data.photos import photo_like
from lib.data.synthetic import BACKGROUNDS, COLOURS, SHAPES, draw_scene
from lib.data.synthetic import SIZES as SIZES_DRAWN
from lib.data.synthetic import Scene as Drawn
from lib.data.synthetic_video import write_video
from lib.data.video_scenes import CUT_RULE, CutRule, cut_points, embedded_frames
from lib.data.videos import sample_frames
from lib.ingest.image_index import build_image_index
from lib.model.encoder import ClipEncoder
from lib.model.loading import load_encoder
from lib.settings import load_settings

TARGETS = {720: 30.0, 1080: 15.0}
RECALL_TARGET, WITHIN_S = 0.9, 1.0
CONTENTS = ("photos", "shapes")
SIZES = {240: (320, 240), 360: (640, 360), 720: (1280, 720), 1080: (1920, 1080)}
SMOKE = dict(models=["demo"], heights=[240], speed_videos=1, speed_seconds=8.0, cut_videos=2, cut_seconds=12.0,
             cut_height=240, distances=[0.002], ratios=[5.0])


@dataclass(frozen=True)
class Video:
    path: Path
    seconds: float
    cuts: list[float]


def scene_picture(content: str, width: int, height: int, seed: int) -> Image.Image:
    """A scene's picture: photo-like (lib/data/photos.py), or a drawing of the synthetic dataset's classes
    (a colour, a shape, a count, a size and a ground), which the demo model was trained to tell apart."""
    if content == "photos":
        return photo_like(width, height, seed)
    rng = random.Random(seed)
    drawn = Drawn(rng.choice(list(COLOURS)), rng.choice(SHAPES), rng.randint(1, 3), rng.choice(SIZES_DRAWN),
                  rng.choice(BACKGROUNDS))
    return draw_scene(drawn, rng, 224).resize((width, height))


def generated(cache: Path, height: int, seconds: float, seed: int, cut_keyframes: bool,
              content: str = "photos") -> Video:
    """A video of scenes of 1.5-10 s, written once into `cache` (its cut times beside it)."""
    width, height = SIZES[height]
    name = f"{content}-{height}p-{seconds:g}s-{seed}-{'x264' if cut_keyframes else 'gop'}"
    path, facts = cache / f"{name}.mp4", cache / f"{name}.json"
    if not facts.exists():
        cache.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed)
        lengths: list[float] = []
        while sum(lengths) < seconds - 1.5:  # the last scene takes what is left, at least 1.5 s
            lengths.append(round(float(rng.uniform(1.5, 10.0)), 1))
        lengths[-1] = round(seconds - sum(lengths[:-1]), 1)
        total = sum(lengths)
        scenes = [(length, scene_picture(content, width, height, seed * 1000 + i)) for i, length in enumerate(lengths)]
        cuts = write_video(path, scenes, (width, height), seed=seed, cut_keyframes=cut_keyframes)
        facts.write_text(json.dumps({"seconds": total, "cuts": cuts}))
    known = json.loads(facts.read_text())
    return Video(path, known["seconds"], known["cuts"])


def video_set(cache: Path, height: int, count: int, seconds: float, first_seed: int,
              content: str = "photos") -> list[Video]:
    """`count` videos, every other one with x264's keyframes at the cuts, the others with a fixed GOP."""
    return [generated(cache, height, seconds, first_seed + i, i % 2 == 0, content) for i in range(count)]


def build_rate(encoder: ClipEncoder, spec: str, videos: list[Video], tmp: Path) -> tuple[float, int]:
    """Seconds of video per wall-clock second of build_image_index over a folder of `videos` (a fresh
    workspace, the model loaded already), and the scenes it found."""
    folder = tmp / "videos"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for video in videos:
        shutil.copy(video.path, folder / video.path.name)
    workspace = link_model_cache(tmp / f"workspace-{time.monotonic_ns()}")
    settings = load_settings(environ={}, overrides=dict(workspace=str(workspace), dataset_name="videobench",
                                                        dataset_path=str(folder), model=spec))
    started = time.perf_counter()
    report = build_image_index(settings, encoder, progress=False, rebuild=True)
    elapsed = time.perf_counter() - started
    assert report.videos == len(videos), f"the benchmark videos did not build cleanly: {report}"
    return sum(v.seconds for v in videos) / elapsed, report.scenes


def decode_rate(videos: list[Video]) -> tuple[float, float]:
    """Seconds of video per second of sample_frames alone, and the frames it samples per second of video."""
    started, frames = time.perf_counter(), 0
    for video in videos:
        frames += len(sample_frames(video.path).times)
    seconds = sum(v.seconds for v in videos)
    return seconds / (time.perf_counter() - started), frames / seconds


def speed_rows(args: argparse.Namespace, encoders: dict[str, ClipEncoder], cache: Path, tmp: Path) -> list[tuple]:
    rows = []
    for height in args.heights:
        videos = video_set(cache, height, args.speed_videos, args.speed_seconds, 100 + height)
        decoded, per_second = decode_rate(videos)
        for spec, encoder in encoders.items():
            forward, _ = forward_rate(encoder, [16, 32], 2.0)
            rate, scenes = build_rate(encoder, spec, videos, tmp)
            target = TARGETS.get(height)
            meets = "-" if target is None or spec != "random:ViT-B/32" else "**yes**" if rate >= target else "**no**"
            rows.append((f"{height}p", spec, len(videos), sum(v.seconds for v in videos), scenes, rate, decoded,
                         forward / per_second, f">= {target:g}x" if target else "-", meets))
            print(f"  {height}p {spec}: {rate:.1f}x real time", flush=True)
    return rows


@dataclass(frozen=True)
class Embedded:
    """A video's sampled frames, every one embedded (for the grid), and what the build's own path cost."""
    times: list[float]
    vectors: np.ndarray
    cost_s: float  # sampling plus embedded_frames with the default rule, as the build does them


def embedded(encoder: ClipEncoder, video: Video) -> Embedded:
    started = time.perf_counter()
    sampled = sample_frames(video.path)
    embedded_frames(len(sampled.times), lambda indexes: encoder.encode_images([sampled.frames[i] for i in indexes]))
    cost = time.perf_counter() - started
    return Embedded(sampled.times, encoder.encode_images(sampled.frames), cost)


def found_cuts(starts: Sequence[float], cuts: Sequence[float]) -> tuple[int, int]:
    """How many true cuts have a scene start within WITHIN_S, and how many scene starts have no cut there."""
    hits = sum(any(abs(start - cut) <= WITHIN_S for start in starts) for cut in cuts)
    false = sum(not any(abs(start - cut) <= WITHIN_S for cut in cuts) for start in starts)
    return hits, false


def rule_scores(rule: CutRule, frames: list[Embedded], videos: list[Video]) -> tuple[float, float, float]:
    """Recall within 1 s, false cuts per minute and frames embedded per second of video of `rule`, embedding
    frames as the build does (embedded_frames), their vectors taken from those of every frame."""
    hits = false = embeds = 0
    for sampled, video in zip(frames, videos, strict=True):
        indexes, vectors = embedded_frames(len(sampled.times), lambda chosen, s=sampled: s.vectors[list(chosen)], rule)
        found, wrong = found_cuts([sampled.times[indexes[i]] for i in cut_points(vectors, rule)[1:]], video.cuts)
        hits, false, embeds = hits + found, false + wrong, embeds + len(indexes)
    seconds = sum(v.seconds for v in videos)
    return hits / max(1, sum(len(v.cuts) for v in videos)), 60 * false / seconds, embeds / seconds


def cut_rows(args: argparse.Namespace, encoders: dict[str, ClipEncoder], content: str,
             videos: list[Video]) -> list[tuple]:
    rows = []
    rules = sorted({CUT_RULE, *(CutRule(d, r) for d in args.distances for r in args.ratios)},
                   key=lambda rule: (rule.min_distance, rule.ratio))
    for spec, encoder in encoders.items():
        frames = [embedded(encoder, video) for video in videos]
        cost = sum(f.cost_s for f in frames) / sum(v.seconds for v in videos)
        for rule in rules:
            recall, false, embeds = rule_scores(rule, frames, videos)
            default = rule == CUT_RULE
            rows.append((spec, content, f"{rule}{' (default)' if default else ''}", f"{recall:.3f}", f"{false:.2f}",
                         f"{embeds:.2f}", f"{cost:.4f}" if default else "-",
                         "**yes**" if recall >= RECALL_TARGET else "no"))
        print(f"  cuts {spec} {content} done", flush=True)
    return rows


def scenedetect_rows(content: str, videos: list[Video]) -> list[tuple]:
    """PySceneDetect's ContentDetector at its defaults on the same videos (None when it is not installed)."""
    if importlib.util.find_spec("scenedetect") is None:
        return []
    from scenedetect import ContentDetector, detect

    hits = false = 0
    started = time.perf_counter()
    for video in videos:
        starts = [float(start.seconds) for start, _ in detect(str(video.path), ContentDetector())[1:]]
        found, wrong = found_cuts(starts, video.cuts)
        hits, false = hits + found, false + wrong
    seconds = sum(v.seconds for v in videos)
    cost = (time.perf_counter() - started) / seconds
    recall = hits / max(1, sum(len(v.cuts) for v in videos))
    return [("PySceneDetect ContentDetector", content, "threshold 27 (its default), every frame", f"{recall:.3f}",
             f"{60 * false / seconds:.2f}", "-", f"{cost:.4f}", "**yes**" if recall >= RECALL_TARGET else "no")]


def table(header: Sequence[str], rows: list[tuple]) -> None:
    print("\n| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in row) + " |")


def make_parser() -> argparse.ArgumentParser:
    parser = SmokeParser(__doc__, SMOKE)
    parser.add_argument("--models", nargs="+", default=["demo", "random:ViT-B/32"])
    parser.add_argument("--heights", type=int, nargs="+", choices=sorted(SIZES), default=[720, 1080],
                        help="video heights of the speed table")
    parser.add_argument("--speed-videos", type=int, default=4, help="videos per height in the speed table")
    parser.add_argument("--speed-seconds", type=float, default=30.0, help="length of each of them")
    parser.add_argument("--cut-videos", type=int, default=8, help="videos of the cut table")
    parser.add_argument("--cut-seconds", type=float, default=60.0, help="length of each of them")
    parser.add_argument("--cut-height", type=int, choices=sorted(SIZES), default=360)
    parser.add_argument("--distances", type=float, nargs="+", default=[0.001, 0.002, 0.005, 0.01],
                        help="min_distance values of the calibration grid")
    parser.add_argument("--ratios", type=float, nargs="+", default=[3.0, 4.0, 5.0, 6.0, 8.0],
                        help="ratio values of the calibration grid")
    return parser


def bench(args: argparse.Namespace) -> None:
    settings = load_settings()
    cache = settings.cache_dir / "bench-videos"
    print(cpu_features(), flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-video-") as name:
        tmp = Path(name)
        encoders = {spec: load_encoder(spec, cache_dir=link_model_cache(tmp / "model") / "cache")
                    for spec in args.models}
        cut_videos = {content: video_set(cache, args.cut_height, args.cut_videos, args.cut_seconds, 1, content)
                      for content in CONTENTS}
        speed = speed_rows(args, encoders, cache, tmp)
        cuts = [row for content, videos in cut_videos.items() for row in cut_rows(args, encoders, content, videos)]
        theirs = [row for content, videos in cut_videos.items() for row in scenedetect_rows(content, videos)]
        for height in args.heights:  # and on the speed table's videos, at their full size
            theirs += scenedetect_rows(f"photos, {height}p", video_set(cache, height, args.speed_videos,
                                                                       args.speed_seconds, 100 + height))
    backends = ", ".join(f"{spec}: {encoder.backend} {encoder.precision}" for spec, encoder in encoders.items())
    print(f"\nSpeed: a folder of H.264 videos (30 fps, keyframes every second; photo-like scenes), a new workspace "
          f"each, the model loaded first ({backends}). Rates are seconds of video per wall-clock second; the "
          "forward alone is the model's images/s over the frames sampled per second of video. Target with "
          "ViT-B/32: >= 30x at 720p, >= 15x at 1080p.")
    table(("video", "model", "videos", "seconds", "scenes", "build x real time", "decode alone x",
           "forward alone x", "target", "meets target"), speed)
    photos = cut_videos[CONTENTS[0]]
    print(f"\nCuts: {len(photos)} videos of {args.cut_height}p of each content, {sum(v.seconds for v in photos):g} s "
          f"and {sum(len(v.cuts) for v in photos)} hard cuts of photo-like scenes, "
          f"{sum(len(v.cuts) for v in cut_videos[CONTENTS[1]])} of drawn shapes; a cut is found when a scene "
          f"starts within {WITHIN_S:g} s of it. Frames are embedded as the build does (every other sampled "
          "frame, then those around a candidate cut). Compute: seconds per second of video (ours: the build's "
          f"sampling and embedding, which the index needs anyway). Target: recall >= {RECALL_TARGET}.")
    table(("detector", "scenes", "rule", "recall within 1 s", "false cuts per min", "frames embedded per video s",
           "compute s per video s", "meets target"), cuts + theirs)
    if not theirs:
        print("\n(PySceneDetect is not installed: scripts/setup_venv.sh --dev installs it)")


def main(argv: list[str] | None = None) -> None:
    run("video_speed", make_parser(), bench, argv)


if __name__ == "__main__":
    main()
