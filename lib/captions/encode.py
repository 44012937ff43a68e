"""Pass one over the pairs: give every distinct image and caption an id, then embed each of them once.

Images are decoded in DataLoader worker processes and encoded in batches (lib/model/decode.py, the
builders' pipeline), or taken from a clip-retrieval embeddings folder when they were encoded before.
What stays in memory is one vector per distinct image and caption, the distinct strings, and two
int32 ids per row; rows themselves are read and dropped a chunk at a time.
"""
from __future__ import annotations

import os
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from lib.captions.pairs import PairsSource
from lib.captions.timing import Stopwatch
from lib.data.embeddings_folder import embeddings_dim, read_embeddings
from lib.data.videos import is_video
from lib.errors import CaptionTableError, IndexMismatchError
from lib.model.decode import encoded_batches
from lib.model.encoder import ClipEncoder
from lib.store.names import split_moment

TEXT_CHUNK = 4096  # captions sorted by length per chunk, so that each batch pads to a similar length


@dataclass
class Distinct:
    """Distinct strings in order of first appearance, each with its id (its position)."""

    values: list[str] = field(default_factory=list)
    ids: dict[str, int] = field(default_factory=dict)

    def id_of(self, value: str) -> int:
        found = self.ids.get(value)
        if found is None:
            found = self.ids[value] = len(self.values)
            self.values.append(value)
        return found


@dataclass
class EncodedPairs:
    """Every row as (image id, caption id), and one L2-normalised vector per distinct image and caption."""

    image_ids: np.ndarray  # int32 per row; -1 where the row names no image
    caption_ids: np.ndarray  # int32 per row; -1 where the row has no caption
    images: list[str]
    captions: list[str]
    image_vectors: np.ndarray  # float32 (images, dim); zero where the image could not be read
    caption_vectors: np.ndarray  # float32 (captions, dim)
    image_errors: dict[int, str]  # image id -> why it has no vector
    row_errors: dict[int, str]  # row -> what the row lacks

    @property
    def rows(self) -> int:
        return len(self.image_ids)

    def scored(self) -> np.ndarray:
        """The rows that get a score: an image that was read, and a caption."""
        good_image = np.ones(len(self.images) + 1, dtype=bool)
        good_image[list(self.image_errors)] = False
        good_image[-1] = False  # id -1: no image named
        return good_image[self.image_ids] & (self.caption_ids >= 0)

    def error(self, row: int) -> str:
        return self.row_errors.get(row) or self.image_errors.get(int(self.image_ids[row]), "")


def normal_caption(text: str) -> str:
    return " ".join(text.split())


class ImageVectors(NamedTuple):
    vectors: np.ndarray  # float32 (images, dim); zero rows where an image has none
    errors: dict[int, str]  # image id -> why it has no vector


class Collected(NamedTuple):
    image_ids: array  # int32 per row
    caption_ids: array
    images: Distinct
    captions: Distinct
    row_errors: dict[int, str]


def collect(source: PairsSource, chunk_rows: int, progress: bool = True, videos: bool = False) -> Collected:
    """Read the rows once: the image and caption id of each, and the rows that lack one; a row whose image is a
    video (a file, or a scene of one: 'a.mp4#t=3,6', as exports name them) is left out unless `videos`."""
    image_ids, caption_ids = array("i"), array("i")
    images, captions, row_errors = Distinct(), Distinct(), {}
    with tqdm(desc="reading rows", unit=" rows", disable=not progress) as bar:
        for chunk in source.chunks(chunk_rows):
            for row in chunk:
                image = row.get(source.image_column, "").strip()
                caption = normal_caption(row.get(source.caption_column, ""))
                if image and not videos and is_video(split_moment(image)[0]):
                    row_errors[len(image_ids)] = "a video, left out (--videos scores its frame)"
                    image = ""
                elif not image or not caption:
                    row_errors[len(image_ids)] = f"no {'image named' if not image else 'caption'} in this row"
                image_ids.append(images.id_of(image) if image else -1)
                caption_ids.append(captions.id_of(caption) if caption else -1)
            bar.update(len(chunk))
    if not image_ids:
        raise CaptionTableError(f"{source.path} has a header but no rows")
    return Collected(image_ids, caption_ids, images, captions, row_errors)


def encode_image_files(encoder: ClipEncoder, images_dir: Path, paths: list[str], batch_size: int, num_workers: int,
                       progress: bool = True) -> ImageVectors:
    """Each image file once, decoded in `num_workers` processes; unreadable ones get their reason."""
    vectors = np.zeros((len(paths), encoder.dim), dtype=np.float32)
    errors: dict[int, str] = {}
    with tqdm(total=len(paths), desc="encoding images", unit=" img", disable=not progress) as bar:
        for batch in encoded_batches(encoder, images_dir, paths, batch_size, num_workers):
            for item in batch:
                if item.vector is None:
                    errors[item.i] = item.error or "unreadable"
                else:
                    vectors[item.i] = item.vector
            bar.update(len(batch))
    return ImageVectors(vectors, errors)


def _lookup(paths: list[str], images_dir: Path) -> dict[str, int]:
    """Each image under the names an embeddings folder may use for it: as written, and as an absolute path."""
    found: dict[str, int] = {}
    for i, path in enumerate(paths):
        found.setdefault(os.path.normpath(path), i)
        found.setdefault(os.path.normpath(os.path.abspath(images_dir / path)), i)
    return found


def read_image_vectors(folder: Path, images_dir: Path, paths: list[str], encoder: ClipEncoder,
                       progress: bool = True) -> ImageVectors:
    """The vectors of the images from a clip-retrieval embeddings folder, matched by image path."""
    dim = embeddings_dim(folder)
    if dim != encoder.dim:
        raise IndexMismatchError(f"the image embeddings in {folder} are {dim}-d but model {encoder.identity.spec!r} "
                                 f"makes {encoder.dim}-d vectors; score with the model that wrote them (--model)")
    lookup = _lookup(paths, images_dir)
    vectors = np.zeros((len(paths), dim), dtype=np.float32)
    found = np.zeros(len(paths), dtype=bool)
    with tqdm(desc="reading image embeddings", unit=" img", disable=not progress) as bar:
        for chunk in read_embeddings(folder):
            for j, path in enumerate(chunk.paths):
                i = lookup.get(os.path.normpath(path))
                if i is not None and not found[i]:
                    vectors[i], found[i] = chunk.vectors[j], True
            bar.update(len(chunk.vectors))
    missing = f"not in the image embeddings of {folder}"
    return ImageVectors(vectors, {int(i): missing for i in np.flatnonzero(~found)})


def encode_captions(encoder: ClipEncoder, captions: list[str], progress: bool = True) -> np.ndarray:
    """Each distinct caption once, as it is (no prompt template), in chunks sorted by length."""
    vectors = np.zeros((len(captions), encoder.dim), dtype=np.float32)
    with tqdm(total=len(captions), desc="encoding captions", unit=" text", disable=not progress) as bar:
        for start in range(0, len(captions), TEXT_CHUNK):
            chunk = captions[start:start + TEXT_CHUNK]
            order = np.argsort([len(text) for text in chunk], kind="stable")
            vectors[start + order] = encoder.encode_texts([chunk[i] for i in order])
            bar.update(len(chunk))
    return vectors


def encode_pairs(source: PairsSource, encoder: ClipEncoder, images_dir: Path, image_embeddings: Path | None,
                 batch_size: int, num_workers: int, chunk_rows: int, progress: bool = True,
                 stopwatch: Stopwatch | None = None, videos: bool = False) -> EncodedPairs:
    """Read the rows once and embed every distinct image (from files or `image_embeddings`) and caption."""
    stopwatch = stopwatch or Stopwatch()
    with stopwatch.phase("read rows"):
        image_ids, caption_ids, images, captions, row_errors = collect(source, chunk_rows, progress, videos)
    paths = images.values
    images.ids.clear()  # the id maps are only needed while reading
    captions.ids.clear()
    with stopwatch.phase("images"):
        if image_embeddings is not None:
            image_vectors, image_errors = read_image_vectors(image_embeddings, images_dir, paths, encoder, progress)
        else:
            image_vectors, image_errors = encode_image_files(encoder, images_dir, paths, batch_size, num_workers,
                                                             progress)
    with stopwatch.phase("captions"):
        caption_vectors = encode_captions(encoder, captions.values, progress)
    return EncodedPairs(np.frombuffer(image_ids, dtype=np.int32), np.frombuffer(caption_ids, dtype=np.int32),
                        paths, captions.values, image_vectors, caption_vectors, image_errors, row_errors)
