"""/similar with `regions`: an image split into its sub-pictures (lib/data/regions.py), each searched on its own,
so that a photo inside a collage, a screenshot or a slide finds its copies, which the whole image matches badly."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image

from lib.data.images import DecodedImage, decode_image
from lib.data.regions import Box, find_regions
from lib.errors import QueryError
from lib.model.decode import region_limits

if TYPE_CHECKING:
    from lib.serve.search import SearchHit, SearchService

WORKING_SIDE = 2048  # an indexed picture is split at most this large; boxes are given in its own pixels


@dataclass(frozen=True)
class RegionHits:
    box: list[int]  # [x0, y0, x1, y1] in the image's own (upright) pixels
    results: list[SearchHit]


def scaled(box: Box, picture: Image.Image, size: tuple[int, int]) -> list[int]:
    """A box found in a decoded (maybe shrunk) picture, in the pixels of the image of `size`."""
    sx, sy = size[0] / picture.width, size[1] / picture.height
    return [round(box.x0 * sx), round(box.y0 * sy), min(size[0], round(box.x1 * sx)), min(size[1], round(box.y1 * sy))]


def indexed_picture(service: SearchService, image_id: int) -> DecodedImage:
    """An indexed picture's pixels (a video's scene: its frame is not split), for splitting."""
    record = service.record(image_id)
    if record.media == "video":
        raise QueryError(f"regions: image {image_id} is a scene of a video; regions are found in pictures")
    with service.image_file(record) as file:
        return decode_image(file, max_side=WORKING_SIDE)


def similar_regions(service: SearchService, k: int, image: DecodedImage | None, image_id: int | None,
                    dataset: str | None, partitions: Sequence[str] | None, threshold: float | None = None,
                    exact: bool = False) -> list[RegionHits]:
    """Each region of the uploaded or indexed picture with its k nearest images (never the picture's own rows),
    in reading order; a picture without regions is one region, the whole of it. With `threshold`, only results
    that reach it."""
    decoded = image if image is not None else indexed_picture(service, image_id)  # type: ignore[arg-type]
    if image_id is not None and dataset is None:
        dataset = service.record(image_id).dataset
    searched = service.dataset_named(service.indexes.current(), dataset)
    own = service.own_rows(image_id)
    boxes = find_regions(decoded.image, region_limits(service.encoder.transform))
    vectors = service.encoder.encode_images([decoded.image.crop(box) for box in boxes])
    found = []
    for box, vector in zip(boxes, vectors, strict=True):
        hits = service.nearest(vector[None], searched, k, partitions, own, exact)
        kept = hits if threshold is None else [hit for hit in hits if hit.score >= threshold]
        found.append(RegionHits(scaled(box, decoded.image, decoded.size), kept))
    return found
