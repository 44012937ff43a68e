"""Videos on the Ray engine: each a row of its own, sampled by a Ray Data task into its frames' uint8 crops (a
ragged column: videos have different frame counts), encoded by the same encoder actors as pictures, and cut
into scenes on the driver (lib/data/video_scenes.py), which stays the single writer."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from lib.data.datasets import ImageFile
from lib.data.video_scenes import VideoFrames, video_scenes
from lib.ingest.ray_cluster import ActorPlan
from lib.ingest.ray_engine import NO_TIME, Columns, EncoderActor, fresh_rows
from lib.model.decode import EncodedFile
from lib.model.preprocess import ClipTransform
from lib.model.video_decode import decode_video

VIDEOS_PER_BATCH = 2  # a batch holds up to 2 x 600 frames of crops (180 MB at 224 px)
FRAMES_PER_CALL = 64


def decode_video_batch(batch: Columns, root: str, transform: ClipTransform, time_limit_s: float) -> Columns:
    """Sample and crop a batch of videos; a bad one gets an error and no frames, never an exception."""
    items = [decode_video(int(i), Path(root) / str(path), transform, time_limit_s, threads=1)  # a task's 1 CPU
             for i, path in zip(batch["i"], batch["path"], strict=True)]
    empty = np.zeros((0, transform.crop_height, transform.crop_width, 3), np.uint8)

    def column(values: list) -> np.ndarray:
        found = np.empty(len(values), dtype=object)
        found[:] = values
        return found

    return {
        "i": np.asarray([item.i for item in items], dtype=np.int64),
        "crops": column([empty if item.pixels is None else item.pixels.numpy() for item in items]),
        "error": np.asarray([item.error or "" for item in items], dtype=object),
        "width": np.asarray([item.size[0] for item in items], dtype=np.int32),
        "height": np.asarray([item.size[1] for item in items], dtype=np.int32),
        "sha256": np.asarray([item.sha256 for item in items], dtype=object),
        "times": column([np.asarray(item.frames.times if item.frames else [], np.float64) for item in items]),
        "signatures": column([np.frombuffer(b"".join(item.frames.all_signatures()), np.uint8) if item.frames
                              else np.zeros(0, np.uint8) for item in items]),
        "duration": np.asarray([item.frames.duration_s if item.frames else 0.0 for item in items], np.float64),
        "taken_ns": np.asarray([NO_TIME if item.facts.taken_ns is None else item.facts.taken_ns for item in items],
                               dtype=np.int64),
        "camera": np.asarray([""] * len(items), dtype=object),
        "orientation": np.ones(len(items), dtype=np.int32),
    }


class VideoEncoderActor(EncoderActor):
    """The encoder actor for video rows: each row's frames encoded, `batch_size` at a time."""

    def __call__(self, batch: Columns) -> Columns:
        if self.problem:
            raise self.problem
        assert self.encoder is not None, "the actor loaded no encoder and recorded no problem"
        vectors = [self._encode(np.asarray(crops)) for crops in batch["crops"]]
        found = np.empty(len(vectors), dtype=object)
        found[:] = vectors
        return {**{name: column for name, column in batch.items() if name != "crops"}, "vectors": found}

    def _encode(self, crops: np.ndarray) -> np.ndarray:
        assert self.encoder is not None
        if not len(crops):
            return np.zeros((0, self.encoder.dim), np.float32)
        return np.concatenate([self.encoder.encode_pixels(torch.from_numpy(self.encoder.transform.normalise(
            crops[start:start + FRAMES_PER_CALL]))) for start in range(0, len(crops), FRAMES_PER_CALL)])


def encoded_video_files(batch: Columns, seen: set[int]) -> list[EncodedFile]:
    """The rows of a video result batch as EncodedFiles with their scenes, leaving out the indexes already seen."""
    items = []
    for row, item in fresh_rows(batch, seen):
        if item.error is None:
            raw = bytes(np.asarray(batch["signatures"][row], np.uint8))
            times = [float(t) for t in np.asarray(batch["times"][row])]
            width = len(raw) // max(1, len(times))
            item.frames = VideoFrames(times, float(batch["duration"][row]),
                                      signatures=[raw[n * width:(n + 1) * width] for n in range(len(times))])
            # The actors embedded every frame (one round trip); the scenes read the ones the local build embeds.
            item.scenes = video_scenes(item.frames, np.asarray(batch["vectors"][row], np.float32).__getitem__)
            item.perceptual_hash = item.frames.signatures[0]
        items.append(item)
    return items


def video_dataset(ray: Any, root: Path, files: list[ImageFile], plan: ActorPlan, transform: ClipTransform,
                  time_limit_s: float, actor_arguments: dict[str, Any]) -> Any:
    """The videos as a Ray dataset: a task samples each, the encoder actors encode their frames."""
    import pyarrow

    table = pyarrow.table({"i": np.arange(len(files), dtype=np.int64), "path": [file.path for file in files]})
    items = ray.data.from_arrow([table.slice(start, VIDEOS_PER_BATCH)
                                 for start in range(0, len(files), VIDEOS_PER_BATCH)])
    decoded = items.map_batches(decode_video_batch, batch_size=VIDEOS_PER_BATCH, num_cpus=plan.decode_cpus,
                                fn_kwargs={"root": str(root), "transform": transform, "time_limit_s": time_limit_s})
    return decoded.map_batches(VideoEncoderActor, batch_size=VIDEOS_PER_BATCH, fn_constructor_kwargs=actor_arguments,
                               compute=ray.data.ActorPoolStrategy(min_size=1, max_size=plan.actors),
                               num_cpus=plan.actor_cpus, num_gpus=plan.actor_gpus)
