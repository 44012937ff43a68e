"""How well a model knows a user's own class folders: lib/model/metrics.py's figures on an indexed dataset.

With the model the dataset was built with, the image vectors come from its index (only the class names
are encoded); with another model (`model_spec`), the dataset's images are encoded afresh and the index is
left alone. Either way the figures are recorded beside the index set (lib/store/dataset_figures.py), one
entry per model, for the classification page.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from lib.errors import ClipSearchError, NotFoundError
from lib.model.decode import encoded_batches
from lib.model.encoder import ClipEncoder
from lib.model.loading import load_encoder
from lib.model.metrics import ClassFigures, class_figures
from lib.model.prompts import DEFAULT_TEMPLATES
from lib.store.catalog import Catalog, DatasetRecord, ImageRecord
from lib.store.dataset_figures import save_evaluation
from lib.store.identity import ModelIdentity
from lib.store.index_files import dataset_vectors
from lib.store.vocab_index import recorded_templates

log = logging.getLogger(__name__)

BATCH = 64


@dataclass(frozen=True)
class FolderEvaluation:
    dataset: str
    model: ModelIdentity
    from_index: bool  # the vectors were the index's own (else encoded afresh with another model)
    images: int
    classes: int
    unreadable: int
    templates: tuple[str, ...]
    figures: ClassFigures

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "model": self.model.to_dict(), "from_index": self.from_index,
                "images": self.images, "classes": self.classes, "unreadable": self.unreadable,
                "templates": list(self.templates), **{k: round(v, 4) for k, v in self.figures._asdict().items()}}


def class_folders(catalog: Catalog, dataset: str) -> tuple[DatasetRecord, list[ImageRecord]]:
    """The dataset and its images that lie in a class folder; refuses a dataset whose partitions are no classes."""
    record = catalog.dataset(dataset)
    if record is None:
        known = ", ".join(d.name for d in catalog.datasets()) or "none"
        raise NotFoundError(f"unknown dataset {dataset!r}; known: {known}")
    images = [image for image in catalog.images(dataset) if image.class_name]
    if record.layout == "flat" or len({image.class_name for image in images}) < 2:
        raise ClipSearchError(f"dataset {dataset!r} has no class folders to evaluate against (layout "
                              f"{record.layout}); index a folder of class folders, one folder per class")
    return record, images


def encode_files(encoder: ClipEncoder, root: Path, images: Sequence[ImageRecord], num_workers: int,
                 progress: bool) -> tuple[np.ndarray, list[ImageRecord]]:
    """The images encoded afresh through the shared decode pipeline; an unreadable one is left out (and logged)."""
    vectors, kept = [], []
    with tqdm(total=len(images), desc="encoding", unit="img", disable=not progress) as bar:
        for batch in encoded_batches(encoder, root, [image.path for image in images], BATCH, num_workers):
            for item in batch:
                if item.vector is None:
                    log.warning("left out %s: %s", images[item.i].path, item.error)
                else:
                    vectors.append(item.vector)
                    kept.append(images[item.i])
            bar.update(len(batch))
    return (np.stack(vectors) if vectors else np.zeros((0, encoder.dim), np.float32)), kept


def indexed_vectors(catalog: Catalog, folder: Path, dataset: str, images: Sequence[ImageRecord]) -> np.ndarray:
    ids, vectors = dataset_vectors(catalog, folder, dataset)
    row = {int(i): n for n, i in enumerate(ids)}
    return vectors[[row[image.id] for image in images]]


def evaluate_folders(indexes_dir: Path, indexes_text_dir: Path, dataset: str, model_spec: str | None = None,
                     templates: Sequence[str] | None = None,
                     load: Callable[[str], ClipEncoder] = load_encoder, num_workers: int = 2,
                     progress: bool = True) -> FolderEvaluation:
    """Evaluate the dataset's model (or `model_spec`) on its class folders and record the figures; `load`
    turns a model spec into an encoder (the settings' backend, precision and model cache, for the CLI)."""
    catalog = Catalog.in_folder(indexes_dir, readonly=True)
    try:
        record, images = class_folders(catalog, dataset)
        encoder = load(model_spec or record.model.spec)
        from_index = encoder.identity.weights_sha256 == record.model.weights_sha256
        if model_spec is None:
            encoder.identity.check_same(record.model, f"dataset {dataset!r}")
        unreadable = 0
        if from_index:
            vectors = indexed_vectors(catalog, indexes_dir, dataset, images)
        elif record.root is None:
            raise ClipSearchError(f"dataset {dataset!r} was imported from embeddings without --images-root: another "
                                  "model cannot encode its images; evaluate it with the model it was built with")
        else:
            vectors, kept = encode_files(encoder, record.root, images, num_workers, progress)
            unreadable, images = len(images) - len(kept), kept
    finally:
        catalog.close()
    names = sorted({image.class_name for image in images})
    position = {name: n for n, name in enumerate(names)}
    labels = np.array([position[image.class_name] for image in images])
    templates = tuple(templates or recorded_templates(indexes_text_dir, encoder.identity) or DEFAULT_TEMPLATES)
    figures = class_figures(encoder, vectors, labels, names, templates)
    evaluation = FolderEvaluation(dataset, encoder.identity, from_index, len(images), len(names), unreadable,
                                  templates, figures)
    summary = evaluation.to_dict()
    save_evaluation(indexes_dir, dataset, encoder.identity, {k: v for k, v in summary.items()
                                                             if k not in ("dataset", "model")})
    return evaluation
