"""The local engine: files decoded in DataLoader worker processes, batches encoded in this process; and the
choice between it and the Ray engine (lib/ingest/ray_engine.py)."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from lib.data.datasets import ImageFile, image_extensions
from lib.model.decode import EncodedFile, encoded_batches
from lib.model.encoder import ClipEncoder
from lib.settings import Settings


class Engine(Protocol):
    def encode(self, root: Path, files: list[ImageFile]) -> Iterator[list[EncodedFile]]: ...


class LocalEngine:
    """Yields the files of a build in batches, each file with its vector or the reason it was skipped."""

    def __init__(self, encoder: ClipEncoder, batch_size: int, num_workers: int) -> None:
        self.encoder, self.batch_size, self.num_workers = encoder, batch_size, num_workers

    def encode(self, root: Path, files: list[ImageFile]) -> Iterator[list[EncodedFile]]:
        yield from encoded_batches(self.encoder, root, [item.path for item in files], self.batch_size,
                                   self.num_workers, image_extensions())


def make_engine(settings: Settings, encoder: ClipEncoder) -> Engine:
    """The engine the `engine` setting names; Ray is imported only when it is asked for."""
    if settings.engine == "ray":
        from lib.ingest.ray_engine import RayEngine

        return RayEngine(settings, encoder)
    return LocalEngine(encoder, settings.batch_size, settings.num_workers)
