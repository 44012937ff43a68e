"""What one encoded file becomes in the catalog: one row and one vector for a picture, a row and a vector per
scene for a video (its rows share the file's facts and differ in `scene` and its times), and for a picture built
with --regions that splits, a row and a vector more per region (`scene` region_scene(k), its box in `region`)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from lib.data.datasets import ImageFile
from lib.model.decode import EncodedFile
from lib.store.names import folder_of
from lib.store.records import ImageRecord, region_scene


def vector_count(item: EncodedFile) -> int:
    return len(item.scenes) if item.scenes is not None else 1 + len(item.regions or ())


def entries_of(item: EncodedFile, file: ImageFile, ids: list[int], dataset: str,
               partition: str) -> tuple[list[ImageRecord], np.ndarray]:
    """The rows and the vectors of an encoded file, the rows taking the first vector_count(item) of `ids`."""
    ids = ids[:vector_count(item)]
    facts = item.facts.captured(file.mtime_ns)
    row = ImageRecord(0, dataset, partition, file.path, file.class_name, item.size[0], item.size[1], file.bytes,
                      file.mtime_ns, item.sha256, file.target, item.perceptual_hash, facts.captured_ns,
                      facts.captured_from, facts.camera, facts.orientation, folder_of(file.path))
    if item.scenes is None:
        assert item.vector is not None, "an encoded picture has its vector"
        if not item.regions or item.region_vectors is None or item.region_hashes is None:
            return [replace(row, id=ids[0])], item.vector[None]
        regions = [replace(row, id=i, scene=region_scene(k), region=",".join(map(str, box)), perceptual_hash=signature)
                   for k, (i, box, signature) in enumerate(zip(ids[1:], item.regions, item.region_hashes, strict=True))]
        return [replace(row, id=ids[0])] + regions, np.concatenate([item.vector[None], item.region_vectors])
    rows = [replace(row, id=i, scene=n, video_start=scene.start_s, video_end=scene.end_s, frame_s=scene.frame_s,
                  perceptual_hash=scene.perceptual_hash)
            for n, (i, scene) in enumerate(zip(ids, item.scenes, strict=True))]
    return rows, np.stack([scene.vector for scene in item.scenes])

