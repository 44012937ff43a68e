"""The local engine: files decoded in DataLoader worker processes, batches encoded in this process; and the
choice between it and the Ray engine (lib/ingest/ray_engine.py)."""
from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from lib.data.datasets import ImageFile, image_extensions
from lib.data.videos import is_video
from lib.model.decode import EncodedFile, encoded_batches
from lib.model.encoder import ClipEncoder
from lib.model.video_decode import encoded_videos
from lib.settings import Settings


class Engine(Protocol):
    def encode(self, root: Path, files: list[ImageFile], regions: bool = False) -> Iterator[list[EncodedFile]]: ...


class LocalEngine:
    """Yields the files of a build in batches, each file with its vector or the reason it was skipped."""

    def __init__(self, encoder: ClipEncoder, batch_size: int, num_workers: int, video_time_limit: float) -> None:
        self.encoder, self.batch_size, self.num_workers = encoder, batch_size, num_workers
        self.video_time_limit = video_time_limit
        self.warm_up_s = 0.0  # compiling the encoder and its first runs, apart from the encoding's time

    def _warmed_up(self) -> None:
        started = time.perf_counter()
        self.encoder.warm_up()
        self.warm_up_s += time.perf_counter() - started

    def encode(self, root: Path, files: list[ImageFile], regions: bool = False) -> Iterator[list[EncodedFile]]:
        """The pictures first (with `regions`, each split into its sub-pictures), then the videos (each its own
        batch: lib/model/video_decode.py)."""
        if files:
            self._warmed_up()
        pictures, videos = split_videos(files)
        yield from placed(encoded_batches(self.encoder, root, [files[n].path for n in pictures], self.batch_size,
                                          self.num_workers, image_extensions(), regions), pictures)
        yield from placed(encoded_videos(self.encoder, root, [files[n].path for n in videos], self.batch_size,
                                         self.num_workers, self.video_time_limit), videos)


def split_videos(files: list[ImageFile]) -> tuple[list[int], list[int]]:
    """The positions of the pictures and of the videos among the files."""
    videos = [n for n, file in enumerate(files) if is_video(file.path)]
    taken = set(videos)
    return [n for n in range(len(files)) if n not in taken], videos


def placed(batches: Iterator[list[EncodedFile]], positions: list[int]) -> Iterator[list[EncodedFile]]:
    """Batches of a sublist of the files, each item's index turned back into its position in the whole list."""
    for batch in batches:
        for item in batch:
            item.i = positions[item.i]
        yield batch


def make_engine(settings: Settings, encoder: ClipEncoder) -> Engine:
    """The engine the `engine` setting names; Ray is imported only when it is asked for."""
    if settings.engine == "ray":
        from lib.ingest.ray_engine import RayEngine

        return RayEngine(settings, encoder)
    return LocalEngine(encoder, settings.batch_size, settings.num_workers, settings.video_time_limit)
