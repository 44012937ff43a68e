"""Read, hash, decode and preprocess one image file: the work a decode worker does for each file."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from lib.data.datasets import ImageFile, image_extensions
from lib.data.images import decode_image
from lib.errors import UnreadableImageError
from lib.model.preprocess import ClipTransform


@dataclass
class EncodedFile:
    """One file on its way through a build: decoded to pixels, then encoded to a vector, or skipped."""

    i: int  # position in the build's list of files to encode
    pixels: torch.Tensor | None = None
    error: str | None = None
    size: tuple[int, int] = (0, 0)
    sha256: str = ""
    vector: np.ndarray | None = None


def decode_file(i: int, path: Path, transform: ClipTransform, extensions: set[str]) -> EncodedFile:
    """Never raises for a bad file: the reason goes into `error`, so one file cannot stop a build.

    JPEGs decode in draft mode at no less than the transform's resize side (embeddings at cosine >= 0.9999
    to a full decode on photos, >= 0.995 held by the tests); the size recorded is the full upright size.
    """
    if path.suffix.lower() not in extensions:
        return EncodedFile(i, error=f"not an image file type ({path.suffix or 'no extension'})")
    try:
        data = path.read_bytes()
        image, size = decode_image(data, min_side=transform.size)
    except UnreadableImageError as err:
        return EncodedFile(i, error=str(err))
    except OSError as err:
        return EncodedFile(i, error=f"cannot read file: {err.strerror}")
    # A tensor, not an array: DataLoader hands tensors back through shared memory instead of a pipe.
    return EncodedFile(i, torch.from_numpy(transform(image)), None, size, hashlib.sha256(data).hexdigest())


class DecodeFiles(Dataset):
    """The files of a build as a torch Dataset, decoded in DataLoader worker processes."""

    def __init__(self, root: Path, files: list[ImageFile], transform: ClipTransform) -> None:
        self.root, self.files, self.transform = root, files, transform
        self.extensions = image_extensions()

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> EncodedFile:
        return decode_file(i, self.root / self.files[i].path, self.transform, self.extensions)


def as_list(batch: list[EncodedFile]) -> list[EncodedFile]:
    return batch
