"""The Ray engine: the files of a build decoded by Ray Data tasks and encoded by a pool of encoder actors.

The same pipeline runs on one machine (a local Ray instance started for the build) and on a cluster
(`ray_address`): the planned paths become a Ray dataset, `decode_batch` tasks read and preprocess them
on any node (so the dataset must be on storage every node sees at the same path), `EncoderActor`s each
load the model once and encode, and the results stream back to the driver through `iter_batches`. The
driver stays the single writer: the builder commits partitions exactly as with the local engine.

Ray Data restarts a lost actor and retries its work (it sets max_restarts and max_task_retries to -1
on actors and retries tasks); should a batch still come back twice, the driver keeps the first copy of
each file index. Losing the cluster itself stops the build with a ClusterError.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lib.data.datasets import ImageFile, image_extensions
from lib.data.images import ExifFacts
from lib.errors import ClipSearchError, ModelLoadError
from lib.ingest.local_engine import placed, split_videos
from lib.ingest.ray_cluster import ActorPlan, RayConnection
from lib.model.decode import EncodedFile, decode_file
from lib.model.encoder import ClipEncoder
from lib.model.loading import load_encoder
from lib.model.preprocess import ClipTransform
from lib.settings import Settings

log = logging.getLogger(__name__)

Columns = dict[str, np.ndarray]
BATCHES_PER_BLOCK = 4  # a block of paths is one decode task: small enough to stream and to retry cheaply
NO_TIME = np.iinfo(np.int64).min  # taken_ns of a file without an EXIF date (a column holds no None)


def decode_batch(batch: Columns, root: str, transform: ClipTransform) -> Columns:
    """Decode and crop a batch of files to uint8 pixels (normalised by the actor, so that a quarter of the bytes
    travel); a bad file gets an error and zero pixels, never an exception."""
    extensions = image_extensions()
    items = [decode_file(int(i), Path(root) / str(path), transform, extensions, crop_only=True)
             for i, path in zip(batch["i"], batch["path"], strict=True)]
    shape = (transform.crop_height, transform.crop_width, 3)
    return {
        "i": np.asarray([item.i for item in items], dtype=np.int64),
        "pixels": np.stack([np.zeros(shape, np.uint8) if item.pixels is None else item.pixels.numpy()
                            for item in items]),
        "error": np.asarray([item.error or "" for item in items], dtype=object),
        "width": np.asarray([item.size[0] for item in items], dtype=np.int32),
        "height": np.asarray([item.size[1] for item in items], dtype=np.int32),
        "sha256": np.asarray([item.sha256 for item in items], dtype=object),
        "perceptual_hash": np.asarray([item.perceptual_hash for item in items], dtype=object),
        "taken_ns": np.asarray([NO_TIME if item.facts.taken_ns is None else item.facts.taken_ns for item in items],
                               dtype=np.int64),
        "camera": np.asarray([item.facts.camera for item in items], dtype=object),
        "orientation": np.asarray([item.facts.orientation for item in items], dtype=np.int32),
    }


class EncoderActor:
    """One model load per actor; each call turns a batch of pixels into vectors (the rows with an error get zeros).

    A model that will not load here is raised on the first call, not in __init__: Ray reports a failed
    __init__ only as text, a failed call with the exception itself, which the driver shows as it is."""

    def __init__(self, model: str, options: dict[str, Any], weights_sha256: str, threads: int) -> None:
        torch.set_num_threads(threads)
        self.encoder, self.problem = None, None
        try:
            self.encoder = load_encoder(model, threads=threads, **options)
        except ModelLoadError as err:
            self.problem = ModelLoadError(f"on a Ray worker: {err}")
            return
        if self.encoder.identity.weights_sha256 != weights_sha256:
            self.problem = ModelLoadError(f"model {model!r} on a Ray worker has other weights "
                                          f"({self.encoder.identity.weights_sha256[:12]}) than on the driver "
                                          f"({weights_sha256[:12]}); give every node the same model files")
            return
        self.encoder.warm_up(threads)  # compiled in this process, before the first batch

    def __call__(self, batch: Columns) -> Columns:
        if self.problem:
            raise self.problem
        assert self.encoder is not None, "the actor loaded no encoder and recorded no problem"
        good = batch["error"] == ""
        vectors = np.zeros((len(good), self.encoder.dim), np.float32)
        if good.any():
            pixels = self.encoder.transform.normalise(batch["pixels"][good])
            vectors[good] = self.encoder.encode_pixels(torch.from_numpy(pixels))
        return {**{name: column for name, column in batch.items() if name != "pixels"}, "vector": vectors}


def encoder_options(settings: Settings) -> dict[str, Any]:
    """load_encoder's keyword arguments for the actors: those the driver loaded its encoder with (the threads
    come from the actor plan). The one place to add a setting that changes how the model runs.

    The OpenVINO cache is the workspace's: an actor on the driver's machine reads what the driver converted;
    one on another node converts once into that path (or, where it cannot write there, converts in memory)."""
    return {"precision": settings.precision, "backend": settings.backend, "cache_dir": settings.cache_dir}


def actor_model_spec(spec: str) -> str:
    """A model folder given relative to the driver's directory, made absolute for the workers."""
    path = Path(spec).expanduser()
    return str(path.resolve()) if path.is_dir() else spec


def fresh_rows(batch: Columns, seen: set[int]) -> Iterator[tuple[int, EncodedFile]]:
    """Each row of a result batch whose file index was not seen before (remembered now), with the fields that
    pictures and videos share."""
    for row, i in enumerate(batch["i"].tolist()):
        if i in seen:
            continue
        seen.add(i)
        taken = int(batch["taken_ns"][row])
        facts = ExifFacts(None if taken == NO_TIME else taken, str(batch["camera"][row]),
                          int(batch["orientation"][row]))
        yield row, EncodedFile(i, error=str(batch["error"][row]) or None, sha256=str(batch["sha256"][row]),
                               size=(int(batch["width"][row]), int(batch["height"][row])), facts=facts)


def encoded_files(batch: Columns, seen: set[int]) -> list[EncodedFile]:
    """The rows of a result batch as EncodedFiles, leaving out (and remembering) the file indexes already seen."""
    items = []
    for row, item in fresh_rows(batch, seen):
        if item.error is None:
            item.perceptual_hash, item.vector = bytes(batch["perceptual_hash"][row]), batch["vector"][row]
        items.append(item)
    return items


class RayEngine:
    """Yields the files of a build in batches, decoded and encoded on a Ray cluster (or a local Ray instance)."""

    def __init__(self, settings: Settings, encoder: ClipEncoder, lost_after_s: float = 15.0) -> None:
        self.settings, self.encoder = settings, encoder
        self.connection = RayConnection(settings.ray_address, lost_after_s)

    def encode(self, root: Path, files: list[ImageFile], regions: bool = False) -> Iterator[list[EncodedFile]]:
        """The pictures, then the videos (lib/ingest/ray_video.py), each a stream of their own."""
        from lib.ingest.ray_video import encoded_video_files, video_dataset

        if regions:
            raise ClipSearchError("regions: the Ray engine does not split pictures into regions yet; build this "
                                  "dataset with the local engine (--engine local), or pass --no-regions")
        if not files:
            return
        pictures, videos = split_videos(files)
        with self.connection as ray:
            cpu_nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0]
            plan = ActorPlan.for_cluster(ray.cluster_resources(), len(cpu_nodes))
            log.info("Ray cluster at %s: %s", self.connection.where, plan.describe())
            if pictures:
                dataset = self._dataset(ray, root, [files[n] for n in pictures], plan)
                yield from placed(self._stream(dataset, encoded_files), pictures)
            if videos:
                dataset = video_dataset(ray, root, [files[n] for n in videos], plan, self.encoder.transform,
                                        self.settings.video_time_limit, self._actor_arguments(plan))
                yield from placed(self._stream(dataset, encoded_video_files), videos)

    def _stream(self, dataset: Any, convert: Callable[[Columns, set[int]], list[EncodedFile]]
                ) -> Iterator[list[EncodedFile]]:
        seen: set[int] = set()
        for batch in self.connection.stream(dataset.iter_batches(batch_size=None, batch_format="numpy")):
            items = convert(batch, seen)
            if items:
                yield items

    def _actor_arguments(self, plan: ActorPlan) -> dict[str, Any]:
        return {"model": actor_model_spec(self.settings.model), "options": encoder_options(self.settings),
                "weights_sha256": self.encoder.identity.weights_sha256, "threads": plan.threads}

    def _dataset(self, ray: Any, root: Path, files: list[ImageFile], plan: ActorPlan) -> Any:
        import pyarrow

        batch_size = self.settings.batch_size
        table = pyarrow.table({"i": np.arange(len(files), dtype=np.int64), "path": [file.path for file in files]})
        block = batch_size * BATCHES_PER_BLOCK
        items = ray.data.from_arrow([table.slice(start, block) for start in range(0, len(files), block)])
        decoded = items.map_batches(decode_batch, batch_size=batch_size, num_cpus=plan.decode_cpus,
                                    fn_kwargs={"root": str(root), "transform": self.encoder.transform})
        return decoded.map_batches(EncoderActor, batch_size=batch_size,
                                   fn_constructor_kwargs=self._actor_arguments(plan),
                                   compute=ray.data.ActorPoolStrategy(min_size=1, max_size=plan.actors),
                                   num_cpus=plan.actor_cpus, num_gpus=plan.actor_gpus)
