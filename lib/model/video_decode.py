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
from lib.data.perceptual import reduced
from lib.data.video_scenes import VideoFrames, video_scenes
from lib.data.videos import sample_frames
from lib.model.decode import READ_ERRORS, EncodedFile, as_list, why_unreadable
from lib.model.encoder import ClipEncoder
from lib.model.preprocess import ClipTransform


def decode_video(i: int, path: Path, transform: ClipTransform, time_limit_s: float, threads: int = 0) -> EncodedFile:
    """A video's sampled frames as uint8 crops (n, H, W, 3), with their times and reduced pictures in `frames`;
    never raises for a bad file (the reason goes into `error`). The size is the video's, the capture time its
    container's creation_time (else the file's mtime, later). `threads`: FFmpeg's decoding threads (0: its choice)."""
    try:
        sampled = sample_frames(path, time_limit_s=time_limit_s, threads=threads)
        with path.open("rb") as file:
            digest = hashlib.file_digest(file, "sha256").hexdigest()
    except READ_ERRORS as err:
        return EncodedFile(i, error=why_unreadable(err))
    crops = np.stack([transform.crop(frame) for frame in sampled.frames])
    frames = VideoFrames(sampled.times, sampled.duration_s, [np.asarray(reduced(frame)) for frame in sampled.frames])
    return EncodedFile(i, torch.from_numpy(crops), None, (sampled.width, sampled.height), digest,
                       frames.signature(0), ExifFacts(sampled.created_ns), frames=frames)


def encode_video(encoder: ClipEncoder, item: EncodedFile, batch_size: int) -> EncodedFile:
    """A decoded video's frames encoded and cut into scenes (`item.scenes`); its pixels are let go."""
    if item.pixels is None or item.frames is None:
        return item
    crops = item.pixels.numpy()

    def embed(indexes: Sequence[int]) -> np.ndarray:
        chosen = crops[list(indexes)]
        return np.concatenate([encoder.encode_pixels(encoder.transform.normalise(chosen[start:start + batch_size]))
                               for start in range(0, len(chosen), batch_size)])

    item.scenes, item.pixels = video_scenes(item.frames, embed), None
    item.frames = VideoFrames(item.frames.times, item.frames.duration_s)  # the reduced pictures let go too
    return item


class DecodeVideos(Dataset):
    """Video files (paths relative to `root`) as a torch Dataset, sampled in DataLoader worker processes."""

    def __init__(self, root: Path, paths: Sequence[str], transform: ClipTransform, time_limit_s: float,
                 threads: int) -> None:
        self.root, self.paths, self.transform, self.time_limit_s = root, paths, transform, time_limit_s
        self.threads = threads

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> EncodedFile:
        return decode_video(i, self.root / self.paths[i], self.transform, self.time_limit_s, self.threads)


def encoded_videos(encoder: ClipEncoder, root: Path, paths: Sequence[str], batch_size: int, num_workers: int,
                   time_limit_s: float) -> Iterator[list[EncodedFile]]:
    """The videos in order, one per batch, each with its scenes or the reason it has none."""
    if not paths:
        return
    # Worker processes decode beside the encoder: one thread each. In process, FFmpeg takes the cores.
    videos = DecodeVideos(root, paths, encoder.transform, time_limit_s, threads=1 if num_workers else 0)
    loader = DataLoader(videos, batch_size=1, num_workers=num_workers, collate_fn=as_list,
                        prefetch_factor=2 if num_workers else None)
    for batch in loader:
        yield [encode_video(encoder, item, batch_size) for item in batch]
