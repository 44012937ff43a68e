"""The named records the catalog reads and writes: datasets, partitions, images (and their capture facts),
skipped files, IVF layers."""
from __future__ import annotations

import builtins  # `bytes` is a field of ImageRecord, so the type needs its full name there
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from lib.store.identity import ModelIdentity

RETRAIN_GROWTH = 4  # lists 4x longer than planned make every probe 4x costlier
DRIFT = 0.05  # unseen classes fit 0.47 against 0.83 for seen ones in the prototype: a drop this size is clear
EMBEDDINGS_LAYOUT = "embeddings"  # the layout of a dataset imported with --from-embeddings


class MediaFields(TypedDict):
    media: str
    video_start: float | None
    video_end: float | None


def region_scene(k: int) -> int:
    """The `scene` of a picture's region k (from 0): -2, -3, ..., so that a row stays unique by (dataset, path,
    scene), and `scene < 0` still means a picture's pixels."""
    return -2 - k


@dataclass(frozen=True)
class ImageRecord:
    id: int
    dataset: str
    partition: str
    path: str
    class_name: str
    width: int
    height: int
    bytes: int
    mtime_ns: int
    sha256: str
    link_target: str = ""  # a link followed out of the dataset's folder (--follow-links): where it led, resolved
    perceptual_hash: builtins.bytes = b""  # lib/data/perceptual.signature of its pixels (b"": not hashed yet)
    captured_ns: int = 0  # when it was taken, ns since the epoch (EXIF clock read as UTC), or its file's mtime
    captured_from: str = ""  # 'exif' or 'mtime'; '' = not read yet (an older build), or imported embeddings
    camera: str = ""  # EXIF Model (with the Make when the Model does not start with it); '' = none
    orientation: int = 1  # EXIF orientation (1: upright)
    folder: str = ""  # the path's folder relative to the dataset root, '/'-separated; '' at the top
    scene: int = -1  # a video's scene: its number from 0; -1 for a picture; region_scene(k) for a region
    video_start: float = 0.0  # a scene's first and last moment, in seconds from the video's start
    video_end: float = 0.0
    frame_s: float = 0.0  # the moment of the frame that stands for the scene (its vector, its thumbnail)
    region: str = ""  # a region of a picture (--regions): its box 'x0,y0,x1,y1' in the picture's pixels

    @property
    def box(self) -> list[int] | None:
        """A region's box [x0, y0, x1, y1] in its picture's own pixels; None for a whole picture or a scene."""
        return [int(v) for v in self.region.split(",")] if self.region else None

    @property
    def media(self) -> str:
        """'video' for a scene of a video, 'image' for a picture."""
        return "video" if self.scene >= 0 else "image"

    def media_fields(self) -> MediaFields:
        """How an answer shows the entry: its media, and a scene's span in seconds (None for a picture)."""
        scene = self.scene >= 0
        return MediaFields(media=self.media, video_start=round(self.video_start, 3) if scene else None,
                           video_end=round(self.video_end, 3) if scene else None)

    @property
    def capture(self) -> CaptureFacts:
        return CaptureFacts(self.captured_ns, self.captured_from, self.camera, self.orientation)


@dataclass(frozen=True)
class CaptureFacts:
    """What a build reads from a file's header for the date, camera and orientation filters and sorts."""

    captured_ns: int
    captured_from: str  # 'exif' or 'mtime'
    camera: str = ""
    orientation: int = 1


@dataclass(frozen=True)
class DatasetRecord:
    name: str
    root: Path | None  # None: imported embeddings without --images-root, so no image can be served
    layout: str
    index_type: str
    model: ModelIdentity
    regions: bool = False  # built with --regions: pictures that split into sub-pictures index each one too

    @property
    def files_recorded(self) -> bool:
        """Whether its images' sizes and mtimes are the files' own (imported embeddings record their vectors')."""
        return self.layout != EMBEDDINGS_LAYOUT


@dataclass(frozen=True)
class PartitionRecord:
    dataset: str
    name: str
    index_file: str
    index_sha256: str
    count: int
    ivf_file: str = ""  # the partition's IVF lists, encoded with its dataset's shared quantizer ('' = none)
    ivf_sha256: str = ""


@dataclass(frozen=True)
class SkippedFile:
    path: str
    bytes: int
    mtime_ns: int
    reason: str


@dataclass(frozen=True)
class IvfRecord:
    """A dataset's IVF layer: the shared quantizer file, how it was trained, and how it searches (tuned)."""

    dataset: str
    quantizer_file: str
    quantizer_sha256: str
    storage: str  # codes in the lists: flat (exact floats), sq8 or pq<m>
    nlist: int
    trained_on: int  # vectors in the dataset when the quantizer was trained
    fit: float  # mean cosine of the training sample to its nearest centroid
    nprobe: int = 0  # lists probed per query; 0 = IVF could not reach the target recall, so search exactly
    nprobe_filtered: int = 0  # the same for searches restricted to some partitions
    rerank: int = 1  # compressed codes: rerank x max(depth, 100) candidates are scored again exactly
    rerank_filtered: int = 1
    recall: float = 0.0  # recall@10 against exact search when tuned, on the dataset's own vectors
    recall_filtered: float = 0.0
    tuned_on: int = 0  # vectors in the dataset when tuned
    exact_below: int = 0  # a filtered search over fewer vectors than this scans them exactly
    recent_fit: float = 0.0  # mean cosine to the nearest centroid of the vectors encoded since training
    recent_count: int = 0

    def retrain_advice(self, count: int) -> str | None:
        """Why the quantizer should be trained again, if it should: the dataset grew well past what it was
        trained on (every list longer, every probe slower), or new vectors fit its centroids worse."""
        if count > RETRAIN_GROWTH * self.trained_on:
            return (f"the dataset grew from {self.trained_on:,} to {count:,} vectors since its quantizer was trained: "
                    f"lists are {count / self.trained_on:.1f}x longer; rebuild with --retrain")
        if self.recent_count and self.recent_fit < self.fit - DRIFT:
            return (f"vectors added since training fit the quantizer worse (mean cosine to the nearest centroid "
                    f"{self.recent_fit:.2f}, was {self.fit:.2f}); rebuild with --retrain")
        return None


@dataclass(frozen=True)
class ImageText:
    """The words an image is found by in text search: its name and folders split into words, its captions."""

    id: int
    name: str
    folders: str
    caption: str = ""  # from the dataset's captions.csv
    sidecar: str = ""  # from a .txt file beside the image with the same stem
    sidecar_stamp: str = ""  # 'bytes:mtime_ns' of that file when read ('' = none), so it is read again only if changed


@dataclass(frozen=True)
class TextBox:
    """A line of words OCR read in a picture: its text, the recogniser's confidence, and its four corners in
    the picture's pixels (upright, as served), clockwise from the top left."""

    text: str
    confidence: float
    box: tuple[tuple[int, int], ...]

    def as_json(self) -> dict:
        return {"text": self.text, "confidence": round(self.confidence, 4), "box": [list(p) for p in self.box]}


@dataclass(frozen=True)
class ImageWords:
    """What OCR made of one image: its boxes (none for a picture without words), or why it could not read it."""

    id: int
    boxes: tuple[TextBox, ...] = ()
    problem: str = ""  # '' when the picture was read; else the reason (a failure, the time limit)

    @property
    def text(self) -> str:
        return "\n".join(box.text for box in self.boxes)
