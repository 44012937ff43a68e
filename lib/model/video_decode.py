"""Videos through the build's pipeline: frames sampled and cropped in DataLoader worker processes, one video
at a time (a video's frames are up to 600 crops, 90 MB at 224 px, so a batch of videos in flight would not
fit), then encoded here `batch_size` frames at a time and cut into scenes (lib/data/video_scenes.py)."""
from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from lib.data.images import ExifFacts
from lib.data.perceptual import signature
from lib.data.video_scenes import VideoFrames, video_scenes
from lib.data.videos import sample_frames
from lib.model.decode import READ_ERRORS, EncodedFile, as_list, why_unreadable
from lib.model.encoder import ClipEncoder
from lib.model.preprocess import ClipTransform


def decode_video(i: int, path: Path, transform: ClipTransform, time_limit_s: float) -> EncodedFile:
    """A video's sampled frames as uint8 crops (n, H, W, 3), with their times and signatures in `frames`;
    never raises for a bad file (the reason goes into `error`). The size is the video's, the capture time its
    container's creation_time (else the file's mtime, later)."""
    try:
        sampled = sample_frames(path, time_limit_s=time_limit_s)
        with path.open("rb") as file:
            digest = hashlib.file_digest(file, "sha256").hexdigest()
    except READ_ERRORS as err:
        return EncodedFile(i, error=why_unreadable(err))
    crops = np.stack([transform.crop(frame) for frame in sampled.frames])
    frames = VideoFrames(sampled.times, [signature(frame) for frame in sampled.frames], sampled.duration_s)
    return EncodedFile(i, torch.from_numpy(crops), None, (sampled.width, sampled.height), digest,
                       frames.signatures[0], ExifFacts(sampled.created_ns), frames=frames)


def encode_video(encoder: ClipEncoder, item: EncodedFile, batch_size: int) -> EncodedFile:
    """A decoded video's frames encoded and cut into scenes (`item.scenes`); its pixels are let go."""
    if item.pixels is None or item.frames is None:
        return item
    crops = item.pixels.numpy()
    vectors = np.concatenate([encoder.encode_pixels(encoder.transform.normalise(crops[start:start + batch_size]))
                              for start in range(0, len(crops), batch_size)])
    item.scenes, item.pixels = video_scenes(item.frames, vectors), None
    return item


class DecodeVideos(Dataset):
    """Video files (paths relative to `root`) as a torch Dataset, sampled in DataLoader worker processes."""

    def __init__(self, root: Path, paths: Sequence[str], transform: ClipTransform, time_limit_s: float) -> None:
        self.root, self.paths, self.transform, self.time_limit_s = root, paths, transform, time_limit_s

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> EncodedFile:
        return decode_video(i, self.root / self.paths[i], self.transform, self.time_limit_s)


def encoded_videos(encoder: ClipEncoder, root: Path, paths: Sequence[str], batch_size: int, num_workers: int,
                   time_limit_s: float) -> Iterator[list[EncodedFile]]:
    """The videos in order, one per batch, each with its scenes or the reason it has none."""
    if not paths:
        return
    loader = DataLoader(DecodeVideos(root, paths, encoder.transform, time_limit_s), batch_size=1,
                        num_workers=num_workers, collate_fn=as_list, prefetch_factor=2 if num_workers else None)
    for batch in loader:
        yield [encode_video(encoder, item, batch_size) for item in batch]
