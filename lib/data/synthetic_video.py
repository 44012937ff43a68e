"""Videos with scenes of known content and hard cuts at known times, written with PyAV (H.264 in MP4), for
tests and benchmarks: each scene is a picture panned slowly, with fresh grain on every frame, so frames of a
scene differ a little and a cut differs a lot, as in footage.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

PAN = 24  # pixels a scene's picture moves over its length
GRAIN = 4.0
GRAIN_FRAMES = 7  # frames of grain drawn once and taken in turn: drawing it afresh per 1080p frame took 0.1 s


def write_video(path: Path, scenes: Sequence[tuple[float, Image.Image]], size: tuple[int, int] = (320, 240),
                fps: int = 30, keyframe_every_s: float = 1.0, seed: int = 0, rotation: int = 0,
                created: str = "", cut_keyframes: bool = True) -> list[float]:
    """Write the scenes ((seconds, picture) each) one after another; returns the times of the cuts. `rotation`
    (counter-clockwise degrees) is written into the display matrix, as phones do for portrait video (the
    pictures are then stored turned the other way, so that they show upright); `created` is the container's
    creation_time (ISO 8601). With `cut_keyframes` false, x264 puts no keyframe at a cut (its scenecut off),
    only one every `keyframe_every_s`, as phones' hardware encoders do."""
    import av

    rng = np.random.default_rng(seed)
    width, height = size
    grain = [rng.normal(0, GRAIN, (height, width, 3)).astype(np.int16) for _ in range(GRAIN_FRAMES)]
    cuts, elapsed = [], 0.0
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "26", "g": str(max(1, round(fps * keyframe_every_s)))}
        if not cut_keyframes:
            stream.options = {**stream.options, "x264-params": "scenecut=0"}
        if rotation:
            stream.set_display_rotation(rotation)
        if created:
            out.metadata["creation_time"] = created
        for n, (seconds, picture) in enumerate(scenes):
            if n:
                cuts.append(elapsed)
            stored = picture.convert("RGB").rotate(-rotation, expand=True) if rotation else picture.convert("RGB")
            base = np.asarray(stored.resize((width + PAN, height + PAN)), dtype=np.int16)
            count = max(1, round(seconds * fps))
            for i in range(count):
                shift = round(PAN * i / count)
                pixels = base[shift:shift + height, shift:shift + width] + grain[(i + n) % GRAIN_FRAMES]
                frame = av.VideoFrame.from_ndarray(np.clip(pixels, 0, 255).astype(np.uint8), format="rgb24")
                for packet in stream.encode(frame):
                    out.mux(packet)
            elapsed += count / fps
        for packet in stream.encode():
            out.mux(packet)
    return cuts


SHOWN = (("red", "circle"), ("blue", "square"), ("green", "star"))  # the scenes of write_video_folder's video


def write_video_folder(root: Path, seconds: float = 3.0) -> list[float]:
    """A small mixed dataset: `clips/three scenes.mp4` (a red circle, a blue square, a green star, `seconds` each,
    320x240, keyframes each second), `clips/truncated.mp4` (its first 3,000 bytes) and two pictures under
    `pictures/` (a yellow triangle, a purple cross); returns the video's cut times."""
    import random

    from lib.data.synthetic import Scene, draw_scene

    rng = random.Random(5)
    (root / "clips").mkdir(parents=True, exist_ok=True)
    (root / "pictures").mkdir(exist_ok=True)
    video = root / "clips" / "three scenes.mp4"
    cuts = write_video(video, [(seconds, draw_scene(Scene(colour, shape, 1, "large", "plain"), rng, 96))
                               for colour, shape in SHOWN])
    (root / "clips" / "truncated.mp4").write_bytes(video.read_bytes()[:3000])
    for colour, shape in (("yellow", "triangle"), ("purple", "cross")):
        draw_scene(Scene(colour, shape, 1, "large", "plain"), rng, 96).save(root / "pictures" / f"{colour} {shape}.png")
    return cuts
