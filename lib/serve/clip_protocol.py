"""clip-retrieval's back-end protocol (`clip_retrieval/clip_back.py` of clip-retrieval 2.45.0) answered by this
server's own search, so that its `ClipClient` and its web front (clip-front) work here unchanged.

How its terms map onto this server's:
- an index (`indice_name`) is a dataset of the current index set; `/indices-list` lists them;
- `modality: "image"` searches the dataset's images; `modality: "text"` searches texts: the entries of the
  vocabularies (text indexes: the one named like the dataset, else every one) and the captions of the images
  nearest to the query, which are encoded then (and kept in the text cache), since captions have no index;
- a result's `id` is the image's id (a vocabulary entry, which has none, gets its position in the vocabulary
  plus VOCABULARY_IDS), `similarity` its cosine, `caption` the image's caption, else its file name;
- `deduplicate` keeps one result of each group of results that lie within DEDUPLICATE_COSINE of each other,
  the best ranked, as clip-retrieval does (connected components of the pairs at 0.94, on the indexed vectors);
- what it can do that this server cannot (a safety model, a violence detector, multilingual CLIP, aesthetic
  re-weighting) is accepted and ignored, and `ignored_options` names it for the answer's header.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from lib.errors import QueryError
from lib.serve.duplicates import components
from lib.serve.loaded_dataset import LoadedDataset
from lib.serve.search import SearchHit, SearchService
from lib.store.catalog import ImageRecord
from lib.store.names import shown

DEDUPLICATE_COSINE = 0.94  # clip_back.py's get_non_uniques threshold
VOCABULARY_IDS = 10**15  # vocabulary entries' ids start here, far above any image id a catalog hands out
CAPTION_CANDIDATES = 50  # nearest images whose captions a text-modality query ranks


@dataclass(frozen=True)
class KnnQuery:
    """One /knn-service request, once decoded: exactly one of text, image and embedding is set."""

    dataset: str | None
    modality: str  # "image" or "text"
    count: int  # results wanted (num_result_ids, capped)
    text: str | None = None
    image: Image.Image | None = None
    embedding: np.ndarray | None = None
    deduplicate: bool = False


@dataclass(frozen=True)
class KnnResult:
    id: int
    similarity: float
    caption: str
    image_id: int | None  # the image a result shows (None for a vocabulary entry)
    fields: dict  # what else clip-retrieval's metadata would hold: path, class, size, dataset


def ignored_options(body: dict) -> list[str]:
    """The options of a request that this server accepts but cannot honour (ClipClient sends most by default)."""
    ignored = [name for name in ("use_safety_model", "use_violence_detector", "use_mclip") if body.get(name)]
    if body.get("aesthetic_score") not in (None, "") and body.get("aesthetic_weight") not in (None, "", 0, 0.0):
        ignored += ["aesthetic_score", "aesthetic_weight"]
    return ignored


def datasets(service: SearchService) -> list[str]:
    return sorted(service.indexes.current().datasets)


def dataset_of(service: SearchService, name: str | None) -> LoadedDataset:
    """The dataset named, or without a name the first one, as clip_back.py takes its first index."""
    index_set = service.indexes.current()
    return service.dataset_named(index_set, name or min(index_set.datasets, default=None))


def query_vector(service: SearchService, query: KnnQuery) -> np.ndarray:
    """The query's unit embedding, (1, dim)."""
    if query.text is not None:
        return service.text_vector(query.text)
    if query.image is not None:
        return service.encoder.encode_images([query.image])
    assert query.embedding is not None
    vector = np.asarray(query.embedding, np.float32).reshape(1, -1)
    if vector.shape[1] != service.encoder.dim:
        raise QueryError(f"embedding_input has {vector.shape[1]} numbers; this server's model "
                         f"({service.encoder.identity.spec}) embeds in {service.encoder.dim}")
    norm = float(np.linalg.norm(vector))
    if not norm:
        raise QueryError("embedding_input is all zeros: it points nowhere")
    return vector / norm


def keep_distinct(vectors: np.ndarray) -> np.ndarray:
    """Which rows to keep (in rank order): the first of each group of rows joined by cosines >= 0.94."""
    if len(vectors) < 2:
        return np.ones(len(vectors), bool)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    first, second = np.nonzero(np.triu(unit @ unit.T >= DEDUPLICATE_COSINE, k=1))
    labels = components(len(vectors), first, second)
    _, leaders = np.unique(labels, return_index=True)  # the lowest row, i.e. the best ranked, of each group
    keep = np.zeros(len(vectors), bool)
    keep[leaders] = True
    return keep


def knn(service: SearchService, query: KnnQuery) -> list[KnnResult]:
    """The results of one /knn-service request, best first."""
    dataset = dataset_of(service, query.dataset)
    vector = query_vector(service, query)
    if query.modality == "text":
        results, vectors = text_results(service, dataset, vector, query.count)
    else:
        hits = service.nearest(vector, dataset, query.count)
        captions = service.catalog().captions_of([h.id for h in hits])
        results = [image_result(h, h.score, captions.get(h.id)) for h in hits]
        vectors = dataset.index.vectors(np.array([r.id for r in results], np.int64)) if results else None
    if query.deduplicate and vectors is not None and len(results) > 1:
        results = [r for r, keep in zip(results, keep_distinct(vectors), strict=True) if keep]
    return results


def image_result(record: ImageRecord | SearchHit, score: float, caption: str | None) -> KnnResult:
    return KnnResult(record.id, round(float(score), 6), caption or shown(record.path).rsplit("/", 1)[-1],
                     record.id, metadata_fields(record))


def metadata_fields(record: ImageRecord | SearchHit) -> dict:
    return {"path": shown(record.path), "dataset": record.dataset, "class_name": record.class_name,
            "width": record.width, "height": record.height}


def text_results(service: SearchService, dataset: LoadedDataset, vector: np.ndarray,
                 count: int) -> tuple[list[KnnResult], np.ndarray | None]:
    """Vocabulary entries and the captions of the nearest images, ranked together by cosine to the query."""
    found: list[tuple[KnnResult, np.ndarray]] = []
    vocabularies = service.indexes.current().vocabularies
    names = [dataset.record.name] if dataset.record.name in vocabularies else sorted(vocabularies)
    for name in names:
        text = vocabularies[name]
        if not text.index.ntotal:
            continue
        scores, rows = text.index.search(vector, min(count, text.index.ntotal))
        entries = [(int(r), float(s)) for r, s in zip(rows[0], scores[0], strict=True) if r >= 0]
        for row, score in entries:
            entry = text.entries[row]
            found.append((KnnResult(VOCABULARY_IDS + row, round(score, 6), entry.label, None,
                                    {"vocabulary": name, "entry_id": entry.id}), text.index.reconstruct(row)))
    hits = {h.id: h for h in service.nearest(vector, dataset, CAPTION_CANDIDATES)}
    captioned = [(hits[i], text) for i, text in service.catalog().captions_of(list(hits)).items()]
    if captioned:
        embedded = np.concatenate([service.text_vector(text) for _, text in captioned])
        scores = embedded @ vector[0]
        found += [(KnnResult(r.id, round(float(s), 6), text, r.id, metadata_fields(r)), e)
                  for (r, text), s, e in zip(captioned, scores, embedded, strict=True)]
    found.sort(key=lambda pair: -pair[0].similarity)
    found = found[:count]
    return [r for r, _ in found], (np.stack([v for _, v in found]) if found else None)


def metadata(service: SearchService, ids: Sequence[int], dataset: str | None,
             link: Callable[[int], str]) -> list[dict]:
    """/metadata: the fields of each image id asked for that the dataset holds, with its link (an id it does not
    hold, a vocabulary entry's included, is left out, as clip-retrieval leaves out what its metadata lacks)."""
    named = dataset_of(service, dataset).record.name
    images = [i for i in ids if 0 <= i < VOCABULARY_IDS]
    records = {i: r for i, r in service.records(images).items() if r.dataset == named}
    captions = service.catalog().captions_of(list(records))
    answer = []
    for image_id in ids:
        if (record := records.get(image_id)) is None:
            continue
        result = image_result(record, 0.0, captions.get(image_id))
        answer.append({"id": image_id, "metadata": {"url": link(image_id), "caption": result.caption,
                                                     **result.fields}})
    return answer
