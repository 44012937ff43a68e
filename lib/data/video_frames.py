"""The picture an indexed entry stands for: a picture file's own, or, for a scene of a video, the frame at the
scene's moment, decoded from the video on demand (the server's thumbnails and full-size frames).

A scene's frame was sampled at a keyframe (lib/data/videos.py), so a seek to it backwards lands on it and
one frame is decoded; where it was not (a video decoded whole), the decoder runs from the keyframe before
it, at most `time_limit_s` seconds.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

from PIL import Image

from lib.data.images import open_image
from lib.data.videos import DecodeClock, UnreadableVideoError, decoded_frames, opened_video, upright
from lib.store.records import ImageRecord

FRAME_TIME_LIMIT_S = 20.0


def frame_at(source: str | Path | BinaryIO, at_s: float, time_limit_s: float = FRAME_TIME_LIMIT_S) -> Image.Image:
    """The first frame shown at or after `at_s` seconds (the last one, past the end), RGB and upright.
    Raises UnreadableVideoError for a file that cannot be read or decoded in `time_limit_s`."""
    clock = DecodeClock(time_limit_s)
    with opened_video(source) as (container, stream):
        if at_s > 0 and stream.time_base is not None:
            container.seek(int(at_s / stream.time_base), stream=stream, backward=True)
        last: Any = None
        for frame in decoded_frames(container, stream, clock):
            last = frame
            if float(frame.time) + 1e-3 >= at_s:
                break
        if last is None:
            raise UnreadableVideoError(f"no frame could be decoded at {at_s:g} s")
        return upright(last.to_image(), last.rotation)


def indexed_picture(source: BinaryIO, record: ImageRecord, max_side: int | None = None) -> Image.Image:
    """What the entry shows: the picture file decoded (EXIF orientation applied), or a scene's frame."""
    if record.media != "video":
        return open_image(source, max_side=max_side)
    picture = frame_at(source, record.frame_s)
    if max_side is not None:
        picture.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return picture
