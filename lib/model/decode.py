"""The image pipeline the builders and the caption scorer share: files read, hashed, decoded and
preprocessed in DataLoader worker processes, then encoded in batches in this process."""
from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from lib.data.images import ExifFacts, decode_image
from lib.data.perceptual import signature
from lib.data.regions import Box, RegionLimits, find_regions
from lib.data.video_frames import frame_at
from lib.data.video_scenes import VideoFrames, VideoScene
from lib.data.videos import is_video
from lib.errors import UnreadableImageError
from lib.model.encoder import ClipEncoder
from lib.model.preprocess import ClipTransform
from lib.store.names import split_moment


@dataclass
class EncodedFile:
    """One file on its way through the pipeline: decoded to pixels, then encoded to a vector, or skipped."""

    i: int  # position in the list of paths handed to the pipeline
    pixels: torch.Tensor | None = None
    error: str | None = None
    size: tuple[int, int] = (0, 0)
    sha256: str = ""
    perceptual_hash: bytes = b""  # lib/data/perceptual.signature of the decoded pixels
    facts: ExifFacts = ExifFacts()  # capture time, camera and orientation from the file's EXIF header
    vector: np.ndarray | None = None
    frames: VideoFrames | None = None  # a video: its sampled frames' times and reduced pictures (pixels: crops)
    scenes: list[VideoScene] | None = None  # a video, once encoded: one entry per scene, in time order
    regions: list[Box] | None = None  # a picture split into two or more sub-pictures (--regions): their boxes
    region_pixels: torch.Tensor | None = None  # their crops, preprocessed like `pixels`
    region_hashes: list[bytes] | None = None  # their perceptual signatures
    region_vectors: np.ndarray | None = None  # their vectors, once encoded


READ_ERRORS = (UnreadableImageError, OSError)


def why_unreadable(err: Exception) -> str:
    """A skip report's reason for one of READ_ERRORS."""
    if isinstance(err, FileNotFoundError):
        return "file not found"
    if isinstance(err, OSError):
        return f"cannot read file: {err.strerror}"
    return str(err)


def draft_side(transform: ClipTransform) -> int:
    """The least side a JPEG is decoded at: twice the resize side, so that CLIP's antialiased resize, not
    libjpeg's DCT scaling, makes the last step. Drafting to the side itself saved 0.5 ms of a 640x480 photo
    (2 % of a ViT-B/32 build), but copies of one picture at other sizes then decoded through other DCT scales
    and drifted apart: duplicate calibration on the planted test set rose from near = 0.9738 (full decode)
    to 0.9973 and near recall fell from 0.59 to 0.36; at twice the side it is 0.9774."""
    return 2 * transform.size


def region_limits(transform: ClipTransform) -> RegionLimits:
    """Regions no smaller than the model's input: a smaller one would be upscaled into a blur."""
    return RegionLimits(min_side=min(transform.crop_height, transform.crop_width))


def split_regions(item: EncodedFile, image: Image.Image, transform: ClipTransform, limits: RegionLimits) -> None:
    """A decoded picture's regions, when it has two or more (lib/data/regions.py), cropped and preprocessed."""
    boxes = find_regions(image, limits)
    if len(boxes) < 2:
        return
    crops = [image.crop(box) for box in boxes]
    item.regions, item.region_hashes = boxes, [signature(crop) for crop in crops]
    item.region_pixels = torch.from_numpy(np.stack([transform(crop) for crop in crops]))


def decode_file(i: int, path: Path, transform: ClipTransform, extensions: set[str] | None,
                crop_only: bool = False, regions: RegionLimits | None = None) -> EncodedFile:
    """Never raises for a bad file: the reason goes into `error`, so one file cannot stop a run.

    The pixels are `transform`'s float32, or with `crop_only` its uint8 `crop`, for pixels that travel to
    another machine. `extensions` (lower case, with the dot) refuses other file types up front; None tries
    every file. JPEGs decode in draft mode at no less than twice the transform's resize side (draft_side):
    12 MP photos decode at 1/4 or 1/8 scale, embeddings at cosine >= 0.995 to a full decode
    (tests/model/test_decode.py); the size recorded is the file's full upright size. With `regions`, a picture
    decodes whole (its sub-pictures need their own pixels) and is split (split_regions)."""
    name, moment = split_moment(path.name)
    if extensions is not None and path.suffix.lower() not in extensions:
        return EncodedFile(i, error=f"not an image file type ({path.suffix or 'no extension'})")
    try:
        if is_video(name):  # a caption table's video (score_captions.py --videos): its frame at the moment named
            data = b""
            image = frame_at(path.with_name(name), moment or 0.0)
            size, facts = image.size, ExifFacts()
        else:
            data = path.read_bytes()
            image, size, facts = decode_image(data, min_side=None if regions else draft_side(transform))
    except READ_ERRORS as err:
        return EncodedFile(i, error=why_unreadable(err))
    # A tensor, not an array: DataLoader hands tensors back through shared memory instead of a pipe.
    pixels = transform.crop(image) if crop_only else transform(image)
    item = EncodedFile(i, torch.from_numpy(pixels), None, size, hashlib.sha256(data).hexdigest(), signature(image),
                       facts)
    if regions is not None and data:
        split_regions(item, image, transform, regions)
    return item


class DecodeFiles(Dataset):
    """Image files (paths relative to `root`) as a torch Dataset, decoded in DataLoader worker processes."""

    def __init__(self, root: Path, paths: Sequence[str], transform: ClipTransform,
                 extensions: set[str] | None = None, regions: RegionLimits | None = None) -> None:
        self.root, self.paths, self.transform, self.extensions = root, paths, transform, extensions
        self.regions = regions

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> EncodedFile:
        return decode_file(i, self.root / self.paths[i], self.transform, self.extensions, regions=self.regions)


def as_list(batch: list[EncodedFile]) -> list[EncodedFile]:
    return batch


def encode_regions(encoder: ClipEncoder, items: Sequence[EncodedFile], batch_size: int) -> None:
    """The region crops of decoded pictures encoded, `batch_size` at a time; their pixels are let go."""
    split = [item for item in items if item.region_pixels is not None]
    if not split:
        return
    crops = torch.cat([item.region_pixels for item in split if item.region_pixels is not None])
    vectors = np.concatenate([encoder.encode_pixels(crops[start:start + batch_size])
                              for start in range(0, len(crops), batch_size)])
    start = 0
    for item in split:
        count = len(item.regions or ())
        item.region_vectors, item.region_pixels = vectors[start:start + count], None
        start += count


def encoded_batches(encoder: ClipEncoder, root: Path, paths: Sequence[str], batch_size: int, num_workers: int,
                    extensions: set[str] | None = None, regions: bool = False) -> Iterator[list[EncodedFile]]:
    """The files in order, `batch_size` at a time, each with its vector or the reason it has none; with
    `regions`, a picture's sub-pictures with theirs too."""
    if not paths:
        return
    limits = region_limits(encoder.transform) if regions else None
    loader = DataLoader(DecodeFiles(root, paths, encoder.transform, extensions, limits), batch_size=batch_size,
                        num_workers=num_workers, collate_fn=as_list, prefetch_factor=4 if num_workers else None)
    for batch in loader:
        good = [item for item in batch if item.pixels is not None]
        if good:
            vectors = encoder.encode_pixels(torch.stack([item.pixels for item in good]))
            for item, vector in zip(good, vectors, strict=True):
                item.vector, item.pixels = vector, None
            encode_regions(encoder, good, batch_size)
        yield batch
