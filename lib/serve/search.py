"""The queries the service answers: text to image, image to labels, similar images, image-caption scores."""
from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
from PIL import Image

from lib.data.dataset_files import open_indexed
from lib.errors import NotFoundError, QueryError
from lib.model.encoder import ClipEncoder
from lib.serve import ranking
from lib.serve.index_set import IndexSet, LiveIndexSet, LoadedDataset
from lib.serve.query_terms import Term, check_terms, query_vector, texts_of
from lib.store.catalog import Catalog, ImageRecord

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


Sort = Literal["relevance", "newest", "oldest"]
Mode = Literal["clip", "text", "hybrid"]


@dataclass(frozen=True)
class SearchFilters:
    """What a result must be besides relevant; applied inside the search (lib/store/catalog.filtered_ids)."""

    date_from_ns: int | None = None
    date_to_ns: int | None = None
    folder: str | None = None
    min_width: int | None = None
    min_height: int | None = None

    def given(self) -> bool:
        return any(value is not None for value in (self.date_from_ns, self.date_to_ns, self.folder,
                                                   self.min_width, self.min_height))


@dataclass(frozen=True)
class SearchRequest:
    """One page of a search: the query as terms, the page, the cut-off, filters, order and mode."""

    terms: Sequence[Term]
    k: int
    offset: int = 0
    dataset: str | None = None
    partitions: Sequence[str] | None = None
    exact: bool = False
    min_score: float | None = None
    cutoff: Literal["auto"] | None = None
    filters: SearchFilters = field(default_factory=SearchFilters)
    sort: Sort = "relevance"
    mode: Mode = "clip"
    uploads: Sequence[Image.Image] = ()


@dataclass(frozen=True)
class SearchPage:
    hits: list[SearchHit]
    next_offset: int | None  # where the next page starts; None on the last page
    cutoff_score: float | None  # the score results had to reach (min_score's, the auto cut-off's, the higher)
    relevant: int | None  # how many results there are in all, where that is known


def iso_time(ns: int | None) -> str | None:
    return None if ns is None else datetime.fromtimestamp(ns / 1e9, UTC).isoformat().replace("+00:00", "Z")


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


def _captured(record: ImageRecord) -> tuple[str | None, str | None]:
    source = getattr(record, "captured_from", "")
    return (iso_time(getattr(record, "captured_ns", None)), source) if source else (None, None)


class SearchService:
    """Answers queries with one encoder and the current index set; safe to share between threads."""

    def __init__(self, encoder: ClipEncoder, indexes: LiveIndexSet, logit_scale: float | None = None) -> None:
        self.encoder = encoder
        self.indexes = indexes
        self.logit_scale = logit_scale or encoder.logit_scale
        self._local = threading.local()

    def _catalog(self) -> Catalog:
        """A read-only catalog connection per thread (SQLite connections are not shared), opened again when
        the current index set comes from another catalog file (one put in the old one's place)."""
        catalog, source = getattr(self._local, "catalog", None), self.indexes.current().catalog_file
        if catalog is None or self._local.source != source:
            if catalog is not None:
                catalog.close()
            catalog = self._local.catalog = Catalog.in_folder(self.indexes.indexes_dir, readonly=True)
            self._local.source = source
        return catalog

    def record(self, image_id: int) -> ImageRecord:
        try:
            record = self._catalog().image(image_id)
        except sqlite3.Error:
            record = None
        if record is None or record.dataset not in self.indexes.current().datasets:
            raise NotFoundError(f"no indexed image with id {image_id}")
        return record

    def records(self, ids: Sequence[int]) -> dict[int, ImageRecord]:
        """The catalog rows of these ids (ids without one are left out)."""
        return self._catalog().images_by_id(ids)

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

    def _dataset(self, index_set: IndexSet, name: str | None) -> LoadedDataset:
        if name is None:
            if len(index_set.datasets) != 1:
                raise NotFoundError(f"say which dataset to search: {', '.join(index_set.datasets) or 'none is built'}")
            return next(iter(index_set.datasets.values()))
        if name not in index_set.datasets:
            raise NotFoundError(f"unknown dataset {name!r}; known: {', '.join(index_set.datasets) or 'none'}")
        return index_set.datasets[name]

    def _search(self, vectors: np.ndarray, dataset: LoadedDataset, k: int, partitions: Sequence[str] | None,
                exclude: int | None = None, exact: bool = False) -> list[SearchHit]:
        """Top-k over the chosen partitions (all by default), merged by score."""
        self._check_partitions(dataset, partitions)
        if not dataset.partitions:
            return []
        scores, ids = dataset.search(vectors, k + (exclude is not None), partitions, exact)
        picked = [(int(i), float(s)) for s, i in zip(scores[0], ids[0], strict=True) if i >= 0 and i != exclude]
        return self._hits(picked[:k])

    def _hits(self, picked: list[tuple[int, float]], records: dict[int, ImageRecord] | None = None
              ) -> list[SearchHit]:
        records = self.records([i for i, _ in picked]) if records is None else records
        return [SearchHit(i, score, r.dataset, r.partition, r.class_name, r.path, r.width, r.height,
                          *_captured(r)) for i, score in picked if (r := records.get(i)) is not None]

    def term_vector(self, term: Term, uploads: Sequence[Image.Image]) -> np.ndarray:
        """One term's embedding: a text's, an indexed image's stored vector, or an uploaded image's."""
        if term.text is not None:
            return self.encoder.encode_texts([term.text])
        if term.image_id is not None:
            return self.image_vector(image_id=term.image_id)
        assert term.upload is not None
        if not 0 <= term.upload < len(uploads):
            raise QueryError(f"terms: upload {term.upload} is not one of the {len(uploads)} uploaded images")
        return self.encoder.encode_images([uploads[term.upload]])

    def search(self, asked: SearchRequest) -> SearchPage:
        """One page of results of a composed query (lib/serve/query_terms.py), ranked by CLIP, by the text
        of names and captions, or both fused; cut where relevance ends when asked, filtered inside the
        search, in relevance or date order. Pages continue each other exactly (lib/serve/ranking.py)."""
        check_terms(asked.terms)
        if asked.mode == "text" and (asked.min_score is not None or asked.cutoff is not None):
            raise QueryError("mode: min_score and cutoff apply to CLIP's scores, not to mode 'text'")
        dataset = self._dataset(self.indexes.current(), asked.dataset)
        self._check_partitions(dataset, asked.partitions)
        if not dataset.partitions:
            return SearchPage([], None, None, 0)
        among = self._filtered(dataset, asked.filters)
        threshold, cutoff = asked.min_score, None
        lists: Callable[[int], ranking.Ranked] | None = None
        if asked.mode != "text":
            vector = query_vector(asked.terms, lambda term: self.term_vector(term, asked.uploads))
            key = (vector.tobytes(), tuple(asked.partitions or ()), asked.exact, asked.filters)
            searched = len(among) if among is not None else dataset.count

            def search_depth(depth: int, exact: bool) -> tuple[np.ndarray, np.ndarray]:
                scores, ids = dataset.search(vector, depth, asked.partitions, asked.exact or exact, among)
                return scores[0], ids[0]

            def lists(count: int) -> ranking.Ranked:
                return dataset.ranked.get(key, search_depth, count)

            if asked.cutoff == "auto":
                window = min(ranking.CUTOFF_DEPTH, int(searched * ranking.CUTOFF_SHARE))
                cutoff = ranking.auto_cutoff(lists(window + 1).scores, searched)
                if cutoff is not None:
                    threshold = cutoff if threshold is None else max(threshold, cutoff)
        if asked.mode == "text":
            scores, ids = self._text_ranked(dataset, asked, among)
        elif asked.mode == "hybrid":
            assert lists is not None
            clip = lists(ranking.FUSION_DEPTH)
            clip_ids = clip.ids[:ranking.kept_count(clip, threshold)] if threshold is not None else clip.ids
            scores, ids = ranking.fuse([clip_ids, self._text_ranked(dataset, asked, among)[1]])
        else:
            scores, ids = None, None
        if asked.sort != "relevance":
            return self._by_date(asked, dataset, threshold, lists if ids is None else None, scores, ids)
        if ids is not None:
            assert scores is not None
            return self._page(asked, scores, ids, complete=True, threshold=None)
        assert lists is not None
        wanted = asked.offset + asked.k + 1
        found = lists(wanted)
        if threshold is not None:
            while not found.complete and len(found) < wanted and len(found) and found.scores[-1] >= threshold:
                found = lists(len(found) + 1)
        return self._page(asked, found.scores, found.ids, found.complete, threshold)

    def _page(self, asked: SearchRequest, scores: np.ndarray, ids: np.ndarray, complete: bool,
              threshold: float | None) -> SearchPage:
        end = len(ids) if threshold is None else int(np.searchsorted(-scores, -threshold, side="right"))
        cut = threshold is not None and end < len(ids)
        page = list(zip(ids[asked.offset:min(end, asked.offset + asked.k)].tolist(),
                        scores[asked.offset:min(end, asked.offset + asked.k)].tolist(), strict=True))
        more = asked.offset + asked.k < end or (not complete and not cut)
        known = end if complete or cut else None
        return SearchPage(self._hits(page), asked.offset + asked.k if more else None, threshold, known)

    def _by_date(self, asked: SearchRequest, dataset: LoadedDataset, threshold: float | None,
                 lists: Callable[[int], ranking.Ranked] | None, scores: np.ndarray | None,
                 ids: np.ndarray | None) -> SearchPage:
        """The relevant results (the cut-off's or min_score's, else the first k x 10) by capture time."""
        if ids is None:
            assert lists is not None
            if threshold is None:
                found = lists(asked.k * 10)
                scores, ids = found.scores[:asked.k * 10], found.ids[:asked.k * 10]
            else:
                found = lists(ranking.BASE_DEPTH)
                while not found.complete and len(found) and found.scores[-1] >= threshold:
                    found = lists(len(found) + 1)
                end = ranking.kept_count(found, threshold)
                scores, ids = found.scores[:end], found.ids[:end]
        elif asked.mode == "hybrid":
            scores, ids = scores[:asked.k * 10], ids[:asked.k * 10]
        assert scores is not None
        records = self.records(ids.tolist())
        taken = np.array([getattr(records.get(i), "captured_ns", 0) or 0 for i in ids.tolist()], np.int64)
        order = ranking.date_order(ids, scores, taken, asked.sort == "newest")
        page = order[asked.offset:asked.offset + asked.k]
        hits = self._hits([(int(ids[p]), float(scores[p])) for p in page], records)
        more = asked.offset + asked.k < len(ids)
        return SearchPage(hits, asked.offset + asked.k if more else None, threshold, len(ids))

    def _filtered(self, dataset: LoadedDataset, filters: SearchFilters) -> np.ndarray | None:
        """The ids that pass the filters (None: no filter given)."""
        if not filters.given():
            return None
        f = filters
        return self._catalog().filtered_ids(dataset.record.name, date_from_ns=f.date_from_ns,
                                            date_to_ns=f.date_to_ns, folder=f.folder, min_width=f.min_width,
                                            min_height=f.min_height)

    def _text_ranked(self, dataset: LoadedDataset, asked: SearchRequest, among: np.ndarray | None
                     ) -> tuple[np.ndarray, np.ndarray]:
        """The images whose names or captions hold the query's words (its positive text terms), best first,
        within the chosen partitions and the filters."""
        texts = texts_of(asked.terms)
        if not texts:
            raise QueryError("mode: a text match needs a text term of positive weight")
        found = self._catalog().text_search(dataset.record.name, " ".join(texts), ranking.FUSION_DEPTH)
        ids = np.array([i for i, _ in found], np.int64)
        scores = np.array([s for _, s in found], np.float32)
        held = np.isin(ids, dataset.held(ids, asked.partitions))
        if among is not None:
            held &= np.isin(ids, among)
        return scores[held], ids[held]

    def _check_partitions(self, dataset: LoadedDataset, partitions: Sequence[str] | None) -> None:
        unknown = [p for p in partitions or () if p not in dataset.partitions]
        if unknown:
            why, name = dataset.left_out_why(unknown[0]), dataset.record.name
            raise NotFoundError(f"partition {unknown[0]!r} of dataset {name!r} is left out: {why}" if why
                                else f"dataset {name!r} has no partition {unknown[0]!r}")

    def search_text(self, query: str, k: int, dataset: str | None = None,
                    partitions: Sequence[str] | None = None, exact: bool = False) -> list[SearchHit]:
        """The k images nearest to a text; `exact` scans every vector instead of probing IVF lists."""
        index_set = self.indexes.current()
        return self._search(self.encoder.encode_texts([query]), self._dataset(index_set, dataset), k, partitions,
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
        hits = self._search(self.image_vector(image, image_id), self._dataset(index_set, dataset), k, partitions,
                            exclude=image_id, exact=exact)
        return [hit for hit in hits if hit.score >= threshold] if duplicates else hits

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
