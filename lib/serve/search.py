"""The queries the service answers: text to image, image to labels, similar images, image-caption scores."""
from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from lib.data.dataset_files import open_indexed
from lib.errors import NotFoundError, QueryError, StoreUnavailableError
from lib.model.encoder import ClipEncoder
from lib.serve.index_set import IndexSet, LiveIndexSet
from lib.serve.loaded_dataset import LoadedDataset
from lib.serve.paged_search import PagedSearch, SearchPage, SearchRequest, iso_time
from lib.serve.query_terms import Term
from lib.serve.text_cache import TextVectors
from lib.store.catalog import ImageRecord
from lib.store.catalog_reader import CatalogReader
from lib.store.records import ImageWords, TextBox

DUPLICATE_THRESHOLD = 0.95


@dataclass(frozen=True)
class SearchHit:
    id: int
    score: float
    dataset: str
    partition: str
    class_name: str
    path: str
    width: int
    height: int
    captured_at: str | None = None  # ISO 8601 (UTC): EXIF capture time, else the file's modification time
    captured_from: str | None = None  # "exif" or "mtime" (None: not recorded, as for imported embeddings)
    text_matches: tuple[TextBox, ...] | None = None  # the boxes of words read in the picture that the query matched
    media: str = "image"  # "video" for a scene of a video, which has its span (seconds) too
    video_start: float | None = None
    video_end: float | None = None
    region: list[int] | None = None  # a region of a picture (--regions): its box [x0, y0, x1, y1]; links: the picture's


@dataclass(frozen=True)
class LabelScore:
    id: str
    label: str
    score: float
    probability: float


@dataclass(frozen=True)
class SimilarityMatrix:
    scores: np.ndarray  # images x captions, cosine

    @property
    def pairs(self) -> list[float] | None:
        """The score of image i with caption i, when there are as many of each."""
        rows, cols = self.scores.shape
        return [float(self.scores[i, i]) for i in range(rows)] if rows == cols else None


def one_per_picture(hits: list[SearchHit]) -> list[SearchHit]:
    """The hits (best first) with each picture once: its best row, the picture's own or one of its regions."""
    seen: set[tuple[str, str]] = set()
    kept = []
    for hit in hits:
        if hit.media == "image":
            if (hit.dataset, hit.path) in seen:
                continue
            seen.add((hit.dataset, hit.path))
        kept.append(hit)
    return kept


def _captured(record: ImageRecord) -> tuple[str | None, str | None]:
    """When the picture was taken (ISO 8601) and where that was read; (None, None) where it was not recorded."""
    source = record.captured_from
    return (iso_time(record.captured_ns), source) if source else (None, None)


class SearchService:
    """Answers queries with one encoder and the current index set; safe to share between threads."""

    def __init__(self, encoder: ClipEncoder, indexes: LiveIndexSet, logit_scale: float | None = None,
                 text_cache_size: int = 1024) -> None:
        self.encoder = encoder
        self.indexes = indexes
        self.logit_scale = logit_scale or encoder.logit_scale
        # Through self.encoder at call time: the app puts a timed encoder in its place.
        self.text_vector = TextVectors(lambda texts: self.encoder.encode_texts(texts), text_cache_size)
        self._local = threading.local()

    def catalog(self) -> CatalogReader:
        """A read-only catalog connection per thread (SQLite connections are not shared), opened again when
        the current index set comes from another catalog file (one put in the old one's place, or the first
        one a build writes where the store database's rows were read)."""
        catalog, source = getattr(self._local, "catalog", None), self.indexes.current().catalog_file
        if catalog is None or self._local.source != source:
            if catalog is not None:
                catalog.close()
            catalog = self._local.catalog = self.indexes.open_catalog()
            self._local.source = source
        return catalog

    def record(self, image_id: int) -> ImageRecord:
        try:
            record = self.catalog().image(image_id)
        except sqlite3.Error:
            record = None
        if record is None or record.dataset not in self.indexes.current().datasets:
            raise NotFoundError(f"no indexed image with id {image_id}")
        return record

    def image_words(self, image_id: int) -> tuple[ImageRecord, ImageWords | None]:
        """An indexed image's row and what OCR read in it (None: not read yet)."""
        record = self.record(image_id)
        return record, self.catalog().words_of([image_id]).get(image_id)

    def records(self, ids: Sequence[int]) -> dict[int, ImageRecord]:
        """The catalog rows of these ids (ids without one are left out)."""
        return self.catalog().images_by_id(ids)

    def _root(self, record: ImageRecord) -> tuple[Path, bool]:
        """The folder of the record's dataset, and whether the catalog holds its files' own sizes and mtimes."""
        dataset = self.indexes.current().datasets[record.dataset].record
        if dataset.root is None:
            raise NotFoundError(f"dataset {record.dataset!r} was imported from embeddings without --images-root, so "
                                "its images cannot be served (search still works); import it again with "
                                "--images-root DIR")
        return dataset.root, dataset.files_recorded

    def image_path(self, record: ImageRecord) -> Path:
        return self._root(record)[0] / record.path

    def image_file(self, record: ImageRecord) -> BinaryIO:
        """The indexed image's file, opened, if it is inside its dataset's folder and still the file indexed
        (lib/data/dataset_files.open_indexed); NotFoundError otherwise."""
        root, stamped = self._root(record)
        return open_indexed(root, record, stamped)

    def dataset_named(self, index_set: IndexSet, name: str | None) -> LoadedDataset:
        if index_set.unavailable and (name is None or name not in index_set.datasets):
            raise StoreUnavailableError(index_set.unavailable[0])
        if name is None:
            if len(index_set.datasets) != 1:
                raise NotFoundError(f"say which dataset to search: {', '.join(index_set.datasets) or 'none is built'}")
            return next(iter(index_set.datasets.values()))
        if name not in index_set.datasets:
            raise NotFoundError(f"unknown dataset {name!r}; known: {', '.join(index_set.datasets) or 'none'}")
        return index_set.datasets[name]

    def _search(self, vectors: np.ndarray, dataset: LoadedDataset, k: int, partitions: Sequence[str] | None,
                exclude: set[int] | None = None, exact: bool = False) -> list[SearchHit]:
        """Top-k over the chosen partitions (all by default), merged by score, without the ids of `exclude`."""
        self.check_partitions(dataset, partitions)
        if not dataset.partitions:
            return []
        exclude = exclude or set()
        depth = (2 * k if dataset.record.regions else k) + len(exclude)  # a picture's regions count once
        scores, ids = dataset.search(vectors, depth, partitions, exact)
        picked = [(int(i), float(s)) for s, i in zip(scores[0], ids[0], strict=True) if i >= 0 and i not in exclude]
        return one_per_picture(self.hits(picked))[:k]

    def nearest(self, vector: np.ndarray, dataset: LoadedDataset, k: int, partitions: Sequence[str] | None = None,
                exclude: set[int] | None = None, exact: bool = False) -> list[SearchHit]:
        """The k images of a dataset nearest to a (1, dim) unit vector, over the partitions (all by default)."""
        return self._search(vector, dataset, k, partitions, exclude, exact)

    def hits(self, picked: list[tuple[int, float]], records: dict[int, ImageRecord] | None = None
              ) -> list[SearchHit]:
        records = self.records([i for i, _ in picked]) if records is None else records
        return [SearchHit(i, score, r.dataset, r.partition, r.class_name, r.path, r.width, r.height,
                          *_captured(r), **r.media_fields(), region=r.box)
                for i, score in picked if (r := records.get(i)) is not None]

    def term_vector(self, term: Term, uploads: Sequence[Image.Image]) -> np.ndarray:
        """One term's embedding: a text's, an indexed image's stored vector, or an uploaded image's."""
        if term.text is not None:
            return self.text_vector(term.text)
        if term.image_id is not None:
            return self.image_vector(image_id=term.image_id)
        assert term.upload is not None
        if not 0 <= term.upload < len(uploads):
            raise QueryError(f"terms: upload {term.upload} is not one of the {len(uploads)} uploaded images")
        return self.encoder.encode_images([uploads[term.upload]])

    def search(self, asked: SearchRequest) -> SearchPage:
        """One page of a composed query, its cut-off, filters, order and mode (lib/serve/paged_search.py)."""
        return PagedSearch(self).search(asked)

    def check_partitions(self, dataset: LoadedDataset, partitions: Sequence[str] | None) -> None:
        unknown = [p for p in partitions or () if p not in dataset.partitions]
        if unknown:
            why, name = dataset.left_out_why(unknown[0]), dataset.record.name
            raise NotFoundError(f"partition {unknown[0]!r} of dataset {name!r} is left out: {why}" if why
                                else f"dataset {name!r} has no partition {unknown[0]!r}")

    def search_text(self, query: str, k: int, dataset: str | None = None,
                    partitions: Sequence[str] | None = None, exact: bool = False) -> list[SearchHit]:
        """The k images nearest to a text; `exact` scans every vector instead of probing IVF lists."""
        index_set = self.indexes.current()
        return self._search(self.text_vector(query), self.dataset_named(index_set, dataset), k, partitions,
                            exact=exact)

    def image_vector(self, image: Image.Image | None = None, image_id: int | None = None) -> np.ndarray:
        """The embedding of an uploaded image, or of an indexed one (the vector its index holds)."""
        if image is not None:
            return self.encoder.encode_images([image])
        assert image_id is not None, "give an image or an image id"
        record = self.record(image_id)
        dataset = self.indexes.current().datasets[record.dataset]
        why = dataset.left_out_why(record.partition)
        if why:
            raise NotFoundError(f"image {image_id} is in partition {record.partition!r}, which is left out: {why}")
        return dataset.vector(record.id)

    def similar(self, k: int, image: Image.Image | None = None, image_id: int | None = None,
                dataset: str | None = None, partitions: Sequence[str] | None = None,
                duplicates: bool = False, threshold: float = DUPLICATE_THRESHOLD, exact: bool = False
                ) -> list[SearchHit]:
        index_set = self.indexes.current()
        if image_id is not None and dataset is None:
            dataset = self.record(image_id).dataset
        hits = self._search(self.image_vector(image, image_id), self.dataset_named(index_set, dataset), k, partitions,
                            exclude=self.own_rows(image_id), exact=exact)
        return [hit for hit in hits if hit.score >= threshold] if duplicates else hits

    def own_rows(self, image_id: int | None) -> set[int]:
        """What a search from an indexed image leaves out: the image, and for a picture its regions (a region,
        its picture and the picture's other regions), which hold its own pixels."""
        if image_id is None:
            return set()
        record = self.record(image_id)
        return {image_id} if record.scene >= 0 else {image_id, *self.catalog().picture_rows(record.dataset,
                                                                                           record.path)}

    def classify(self, k: int, vocabulary: str | None = None, image: Image.Image | None = None,
                 image_id: int | None = None) -> tuple[str, list[LabelScore]]:
        """Zero-shot: cosine to every entry, softmax over the whole vocabulary at the model's temperature."""
        index_set = self.indexes.current()
        if vocabulary is None:
            if not index_set.vocabularies:
                raise NotFoundError("no vocabulary is built; run build_text_index.py")
            vocabulary = sorted(index_set.vocabularies)[0]
        if vocabulary not in index_set.vocabularies:
            raise NotFoundError(f"unknown vocabulary {vocabulary!r}; known: {', '.join(index_set.vocabularies)}")
        text = index_set.vocabularies[vocabulary]
        scores, ids = text.index.search(self.image_vector(image, image_id), text.index.ntotal)
        logits = self.logit_scale * scores[0]
        probabilities = np.exp(logits - logits.max())
        probabilities /= probabilities.sum()
        return vocabulary, [LabelScore(text.entries[i].id, text.entries[i].label, float(s), float(p))
                            for i, s, p in zip(ids[0][:k], scores[0][:k], probabilities[:k], strict=True)]

    def similarity(self, captions: Sequence[str], images: Sequence[Image.Image] = (),
                   image_ids: Sequence[int] = ()) -> SimilarityMatrix:
        """Cosine of every image (uploads first, then indexed ids, in order) with every caption."""
        parts = [self.encoder.encode_images(list(images))] if images else []
        parts += [self.image_vector(image_id=i) for i in image_ids]
        return SimilarityMatrix(np.concatenate(parts) @ self.encoder.encode_texts(list(captions)).T)
