"""The local engine: files decoded in DataLoader worker processes, batches encoded in this process."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import torch
from torch.utils.data import DataLoader

from lib.build.decode import DecodeFiles, EncodedFile, as_list
from lib.data.datasets import ImageFile
from lib.model.encoder import ClipEncoder


class LocalEngine:
    """Yields the files of a build in batches, each file with its vector or the reason it was skipped."""

    def __init__(self, encoder: ClipEncoder, batch_size: int, num_workers: int) -> None:
        self.encoder, self.batch_size, self.num_workers = encoder, batch_size, num_workers

    def encode(self, root: Path, files: list[ImageFile]) -> Iterator[list[EncodedFile]]:
        if not files:
            return
        loader = DataLoader(DecodeFiles(root, files, self.encoder.transform), batch_size=self.batch_size,
                            num_workers=self.num_workers, collate_fn=as_list,
                            prefetch_factor=4 if self.num_workers else None)
        for batch in loader:
            good = [item for item in batch if item.pixels is not None]
            if good:
                vectors = self.encoder.encode_pixels(torch.stack([item.pixels for item in good]))
                for item, vector in zip(good, vectors):
                    item.vector, item.pixels = vector, None
            yield batch
