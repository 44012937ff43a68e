"""Frames of a video file, sampled about once a second and shrunk for the model, through PyAV (FFmpeg inside
its wheel).

Keyframes first: with `skip_frame = "NONKEY"` the decoder touches only keyframes, 110x real time for 720p
H.264 on 2 cores against 11x for every frame (shared/MEASURED.md). Phones write one every 1-2 s, and x264
puts one at each hard cut it detects, so they are close to the one-a-second sampling a scene cut needs. A
file whose keyframes lie further apart than MAX_KEYFRAME_GAP_S is decoded whole instead, taking the first
frame at or after each sampling time. Frames are converted to RGB at a reduced size by FFmpeg's scaler
(`reformat`), never at full size.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image

from lib.errors import UnreadableImageError

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".m4v", ".webm", ".mkv", ".avi"})
EVERY_S = 1.0
MAX_FRAMES = 600  # a longer video is sampled more sparsely: at most this many frames of it are embedded
MAX_KEYFRAME_GAP_S = 2.5
SIDE = 256  # the shorter side frames are converted at: above the model's input, far below a video's size


class UnreadableVideoError(UnreadableImageError):
    """A video file PyAV cannot read: damaged, truncated, no video stream, or past the time limit."""


@dataclass(frozen=True)
class SampledVideo:
    times: list[float]  # seconds from the start, ascending
    frames: list[Image.Image]  # RGB, the shorter side SIDE (or less for a smaller video)
    duration_s: float
    width: int  # upright, as it is shown
    height: int
    keyframes_only: bool  # whether only keyframes were decoded
    created_ns: int | None = None  # the container's creation_time (phones write it, in UTC), ns since the epoch


def is_video(path: str) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def _scaled(width: int, height: int, side: int) -> tuple[int, int]:
    scale = min(1.0, side / max(1, min(width, height)))
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def _duration(container: Any, stream: Any) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return float(container.duration or 0) / 1_000_000


class DecodeClock:
    """Raises UnreadableVideoError once decoding has run past its time limit (0: none)."""

    def __init__(self, limit_s: float) -> None:
        self.limit_s, self.started = limit_s, time.monotonic()

    def check(self) -> None:
        if self.limit_s and time.monotonic() - self.started > self.limit_s:
            raise UnreadableVideoError(f"decoding took longer than the limit of {self.limit_s:g} s")


def decoded_frames(container: Any, stream: Any, clock: DecodeClock) -> Iterator[Any]:
    """The stream's frames that carry a time, as they are decoded, within the clock's limit."""
    for frame in container.decode(stream):
        clock.check()
        if frame.time is not None:
            yield frame


def sample_frames(source: str | Path | BinaryIO, every_s: float = EVERY_S, max_frames: int = MAX_FRAMES,
                  side: int = SIDE, time_limit_s: float = 120.0, threads: int = 0) -> SampledVideo:
    """About one frame every `every_s` seconds (at most `max_frames`), keyframes where they are dense enough,
    decoded with `threads` threads (0: FFmpeg's choice). Raises UnreadableVideoError for what cannot be
    read, or when decoding takes longer than `time_limit_s`."""
    clock = DecodeClock(time_limit_s)
    with opened_video(source, threads) as (container, stream):
        duration = _duration(container, stream)
        step = max(every_s, duration / max(1, max_frames))
        size = _scaled(stream.codec_context.width, stream.codec_context.height, side)
        stream.codec_context.skip_frame = "NONKEY"
        turn = [0]  # the display rotation, read from a decoded frame (FFmpeg's display matrix side data)

        def small(frame: Any) -> Any:
            turn[0] = frame.rotation
            return frame.reformat(*size, format="rgb24")

        keyed = [(float(f.time), small(f)) for f in decoded_frames(container, stream, clock)]
        gaps = np.diff([0.0] + [t for t, _ in keyed] + [duration])
        if keyed and float(gaps.max(initial=0.0)) <= max(MAX_KEYFRAME_GAP_S, step * 1.5):
            # Every keyframe while they are sparse: an encoder puts one at a cut, often just after a regular
            # one (2.9 s and 3.0 s), and thinning would drop the one that starts the scene.
            sparse = len(keyed) <= 2 * duration / step + 2
            picked = keyed if sparse else _one_per_step(keyed, step / 2)
            keyframes_only = True
        else:
            container.seek(0)
            stream.codec_context.skip_frame = "DEFAULT"
            picked, next_time = [], 0.0
            for frame in decoded_frames(container, stream, clock):
                if float(frame.time) + 1e-6 >= next_time:
                    picked.append((float(frame.time), small(frame)))
                    next_time = float(frame.time) + step
            keyframes_only = False
        if not picked:
            raise UnreadableVideoError("no frame could be decoded")
        width, height = stream.codec_context.width, stream.codec_context.height
        if turn[0] % 180:
            width, height = height, width
        return SampledVideo([t for t, _ in picked], [upright(f.to_image(), turn[0]) for _, f in picked],
                            max(duration, picked[-1][0]), width, height, keyframes_only,
                            _created_ns(container.metadata))


@contextmanager
def opened_video(source: str | Path | BinaryIO, threads: int = 0) -> Iterator[tuple[Any, Any]]:
    """The open container and its first video stream, decoded with `threads` threads (0: as many as FFmpeg
    likes; a build's decoder workers take 1, which sped a 720p build with ViT-B/32 up from 24-28x to 29-30x
    real time, the encoder no longer sharing 2 cores with 5 decoding threads); what PyAV raises for a file
    it cannot read, in the block too, leaves as UnreadableVideoError with FFmpeg's words."""
    import av

    try:
        with av.open(source, mode="r", metadata_errors="ignore") as container:
            if not container.streams.video:
                raise UnreadableVideoError("the file holds no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            if threads:
                stream.codec_context.thread_count = threads
            yield container, stream
    except UnreadableVideoError:
        raise
    except FileNotFoundError:
        raise UnreadableVideoError("file not found") from None
    except (av.FFmpegError, OSError, ValueError, IndexError) as err:
        reason = getattr(err, "strerror", None) or str(err)  # FFmpeg's words without the errno and the path
        raise UnreadableVideoError(f"damaged, truncated or unsupported video: {reason}") from None


def upright(image: Image.Image, rotation: int) -> Image.Image:
    """A decoded frame turned as its display matrix says (phones record portrait video on its side); `rotation`
    is counter-clockwise degrees, as PyAV's VideoFrame.rotation reads it."""
    turn = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180,
            270: Image.Transpose.ROTATE_270}.get(round(rotation / 90) * 90 % 360)
    return image.transpose(turn) if turn is not None else image


def _created_ns(metadata: dict[str, str]) -> int | None:
    """creation_time as MP4 and MKV muxers write it ('2024-06-01T10:20:30.000000Z'); None when absent or
    unreadable, or the 1904/1970 epoch that a camera without a clock writes."""
    text = metadata.get("creation_time", "").strip()
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000_000_000) if moment.year > 1970 else None


def _one_per_step(keyed: list[tuple[float, Any]], step: float) -> list[tuple[float, Any]]:
    """The keyframes thinned to about one per `step` seconds (the first of each step)."""
    picked, next_time = [], 0.0
    for moment, frame in keyed:
        if moment + 1e-6 >= next_time:
            picked.append((moment, frame))
            next_time = moment + step
    return picked
