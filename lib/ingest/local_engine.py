"""The local engine: files decoded in DataLoader worker processes, batches encoded in this process."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from lib.data.datasets import ImageFile, image_extensions
from lib.model.decode import EncodedFile, encoded_batches
from lib.model.encoder import ClipEncoder


class LocalEngine:
    """Yields the files of a build in batches, each file with its vector or the reason it was skipped."""

    def __init__(self, encoder: ClipEncoder, batch_size: int, num_workers: int) -> None:
        self.encoder, self.batch_size, self.num_workers = encoder, batch_size, num_workers

    def encode(self, root: Path, files: list[ImageFile]) -> Iterator[list[EncodedFile]]:
        yield from encoded_batches(self.encoder, root, [item.path for item in files], self.batch_size,
                                   self.num_workers, image_extensions())
