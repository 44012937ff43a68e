"""The HTTP routes: each turns a validated request into one lib/serve call and the answer into JSON.

A route is a view with `@operation(Answer, json=Body, form=BodyForm, errors=(...))` under `@bp.post(...)`:
the models validate it and document it in /openapi.json; `@public` makes it answer without the key.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from flask import Blueprint, current_app, g, jsonify, request, send_file, send_from_directory, url_for
from PIL import Image
from werkzeug.datastructures import FileStorage
from werkzeug.routing import PathConverter

from api.answers import (
    ClassifyAnswer,
    ConfigAnswer,
    DuplicatesAnswer,
    EvaluationsAnswer,
    Health,
    ImageTextAnswer,
    IndexesAnswer,
    SearchAnswer,
    SimilarAnswer,
    SimilarityAnswer,
)
from api.errors import BadRequest
from api.files import MAX_AGE, file_answer
from api.limits import MAX_IMAGE_ID, current_limits
from api.metrics import metrics_text
from api.models import (
    ClassifyBody,
    ClassifyForm,
    DuplicatesQuery,
    EvaluationsQuery,
    SearchBody,
    SearchForm,
    SignedLink,
    SimilarBody,
    SimilarForm,
    SimilarityBody,
    SimilarityForm,
    ThumbnailQuery,
)
from api.openapi import openapi_document
from api.security import public, signature
from api.validation import body, operation, query_args
from lib.data.images import DecodedImage, decode_image, pixel_count
from lib.errors import NotFoundError
from lib.serve.duplicate_finder import DuplicateFinder
from lib.serve.duplicates import NEAR_DISTANCE, DuplicateGroup, GroupMember
from lib.serve.figures import dataset_evaluations
from lib.serve.loaded_dataset import LoadedDataset
from lib.serve.paged_search import SearchFilters, SearchRequest, page_fields
from lib.serve.query_terms import Term, parse_query
from lib.serve.region_search import similar_regions
from lib.serve.search import SearchHit, SearchService
from lib.serve.thumbnails import browser_copy, needs_browser_copy, thumbnail
from lib.store.names import shown

bp = Blueprint("api", __name__)
FRONTEND = Path(__file__).resolve().parent.parent / "frontend"
IMAGE_ID = f"<int(max={MAX_IMAGE_ID}):image_id>"  # a larger number is no image (and would overflow SQLite)
UPLOAD_SIDE = 1024  # uploads are kept at most this large once decoded: CLIP models take 224-336 pixels


def service() -> SearchService:
    return current_app.extensions["clipsearch"]


def settings():
    return current_app.config["SETTINGS"]


def image_link(endpoint: str, image_id: int) -> str:
    """A link to an image or thumbnail; signed when the server has a key, so that an <img> can open it."""
    key = settings().api_key
    values: dict[str, Any] = {"image_id": image_id, **({"sig": signature(key, image_id)} if key else {})}
    return url_for(endpoint, **values)


def with_links(image: SearchHit | GroupMember) -> dict:
    """An image's fields, with the links to the image and its thumbnail (and, for a scene, to its video)."""
    return {**asdict(image), "path": shown(image.path), "image_url": image_link("api.image", image.id),
            "thumbnail_url": image_link("api.thumbnail_of", image.id),
            "video_url": image_link("api.video", image.id) if image.media == "video" else None}


def hits_answer(k: int, hits: list[SearchHit], notes: list[str], **fields: Any):
    return jsonify({**fields, "k": k, "results": [with_links(h) for h in hits], "notes": notes})


def asked_with_k() -> tuple[Any, int, list[str]]:
    """The validated request, its k capped at max_k, and the notes that say so."""
    asked, notes, cap = body(), [], settings().max_k
    if asked.k > cap:
        notes.append(f"k={asked.k} is over the limit; capped at {cap}")
    return asked, min(asked.k, cap), notes


def read_image(upload: FileStorage) -> Image.Image:
    """An upload decoded and shrunk to a working size (still well above any model's input), within the
    request's budget of pixels, which is checked from the picture's header before it is decoded."""
    return read_upload(upload).image


def read_upload(upload: FileStorage) -> DecodedImage:
    """read_image's picture, with the upright size of the file's own."""
    data, limits = upload.read(), current_limits()
    if not data:
        raise BadRequest("empty upload", f"the file {upload.filename!r} in field {upload.name!r} is empty")
    g.upload_pixels = g.get("upload_pixels", 0) + (pixel_count(data) or 0)
    if g.upload_pixels > limits.request_pixels:
        raise BadRequest("too many pixels", f"the pictures of one request may hold {limits.request_pixels:,} pixels "
                         f"in all; these hold {g.upload_pixels:,} so far")
    return decode_image(data, max_pixels=limits.upload_pixels, max_side=UPLOAD_SIDE)


def image_of(request_body) -> tuple[Image.Image | None, int | None]:
    """The uploaded image (a form's `image`, which wins) or the id of an indexed one."""
    upload = getattr(request_body, "image", None)
    return (read_image(upload), None) if upload is not None else (None, request_body.image_id)


@bp.get("/health")
@public
@operation(Health, errors=())
def health():
    """Liveness, the model, how much is loaded and how many damaged index files are left out (degraded)."""
    index_set = service().indexes.current()
    damaged = len(index_set.left_out_files)
    return jsonify({"status": "degraded" if damaged else "ok", "model": index_set.model.to_dict(),
                    "datasets": len(index_set.datasets), "vocabularies": len(index_set.vocabularies),
                    "left_out_files": damaged})


def search_json(dataset: LoadedDataset) -> dict:
    """How a dataset is searched (issue 12): exact, or IVF with the parameters tuned at build time."""
    ivf = dataset.ivf
    if dataset.store != "files":
        return {"method": "hnsw", "store": dataset.store, "ef_search": dataset.ef_search}
    if ivf is None:
        return {"method": "exact"}
    return {"method": "ivf" if ivf.nprobe else "exact", "storage": ivf.storage, "nlist": ivf.nlist,
            "nprobe": ivf.nprobe, "nprobe_filtered": ivf.nprobe_filtered, "rerank": ivf.rerank,
            "recall_at_10": round(ivf.recall, 4), "recall_at_10_filtered": round(ivf.recall_filtered, 4),
            "tuned_on": ivf.tuned_on, "trained_on": ivf.trained_on,
            "exact_partitions": len(dataset.exact_only), "retrain": ivf.retrain_advice(dataset.count)}


@bp.get("/indexes")
@operation(IndexesAnswer, errors=(401,))
def indexes():
    """The datasets with their partitions, the vocabularies, and what was left out and why."""
    index_set, catalog = service().indexes.current(), service().catalog()
    datasets = [{
        "name": name, "layout": d.record.layout, "index_type": d.record.index_type, "count": d.count,
        "search": search_json(d), "words": catalog.words_counts(name),
        "partitions": [{"name": p.record.name, "class_name": p.class_name, "count": p.record.count}
                       for p in d.partitions.values()],
    } for name, d in sorted(index_set.datasets.items())]
    vocabularies = [{"name": name, "entries": len(v.entries), "templates": list(v.templates)}
                    for name, v in sorted(index_set.vocabularies.items())]
    left_out = [{"what": what, "why": why, "file": index_set.left_out_files.get(what)}
                for what, why in sorted(index_set.left_out.items())]
    return jsonify({"model": index_set.model.to_dict(), "datasets": datasets, "vocabularies": vocabularies,
                    "left_out": left_out})


@bp.post("/search")
@operation(SearchAnswer, json=SearchBody, form=SearchForm, errors=(400, 401, 404))
def search():
    """Search by text: the images of a dataset ranked by cosine similarity to the query."""
    asked, k, notes = asked_with_k()
    uploads = [read_image(upload) for upload in getattr(asked, "image", None) or ()]
    query = asked.query.strip() if asked.query is not None else None
    terms = parse_query(query) if query is not None else [Term(t.weight, t.text, t.image_id, t.upload)
                                                          for t in asked.terms or ()]
    named = {term.upload for term in terms}
    terms += [Term(1.0, upload=n) for n in range(len(uploads)) if n not in named]
    filters = SearchFilters(asked.date_from, asked.date_to, asked.folder, asked.min_width, asked.min_height, asked.ocr)
    request = SearchRequest(terms, k, asked.offset, asked.dataset, asked.partitions, asked.exact, asked.min_score,
                            asked.cutoff, filters, asked.sort, asked.mode, uploads, asked.group_videos)
    page = service().search(request)
    return hits_answer(k, page.hits, notes, **page_fields(page, query, request))


@bp.post("/classify")
@operation(ClassifyAnswer, json=ClassifyBody, form=ClassifyForm, errors=(400, 401, 404))
def classify():
    """Zero-shot labels of an uploaded or indexed image from a vocabulary, with softmax probabilities."""
    asked, k, notes = asked_with_k()
    vocabulary, labels = service().classify(k, asked.vocab, *image_of(asked))
    return jsonify({"vocab": vocabulary, "k": k, "labels": [asdict(label) for label in labels], "notes": notes})


@bp.post("/similar")
@operation(SimilarAnswer, json=SimilarBody, form=SimilarForm, errors=(400, 401, 404))
def similar():
    """The indexed images most like an uploaded or indexed one (never itself); near-duplicates with `duplicates`."""
    asked, k, notes = asked_with_k()
    upload = getattr(asked, "image", None)
    decoded = read_upload(upload) if upload is not None else None
    image_id = None if upload is not None else asked.image_id
    hits = service().similar(k, decoded.image if decoded else None, image_id, asked.dataset, asked.partitions,
                             asked.duplicates, asked.threshold, exact=asked.exact)
    regions = None
    if asked.regions:
        found = similar_regions(service(), k, decoded, image_id, asked.dataset, asked.partitions,
                                asked.threshold if asked.duplicates else None, asked.exact)
        regions = [{"box": part.box, "results": [with_links(h) for h in part.results]} for part in found]
    return hits_answer(k, hits, notes, image_id=image_id, regions=regions)


@bp.post("/similarity")
@operation(SimilarityAnswer, json=SimilarityBody, form=SimilarityForm, errors=(400, 401, 404))
def similarity():
    """Cosine of every image (uploads first, then ids) with every caption."""
    asked = body()
    captions = [caption.strip() for caption in asked.captions]
    images = [read_image(upload) for upload in getattr(asked, "images", None) or ()]
    ids = asked.image_ids or []
    result = service().similarity(captions, images, ids)
    return jsonify({"captions": captions, "image_ids": ids, "matrix": result.scores.astype(float).round(6).tolist(),
                    "pairs": result.pairs})


def group_json(group: DuplicateGroup) -> dict:
    return {"group": group.number, "tier": group.tier, "bytes_freed": group.bytes_freed, "keeper": group.keeper.id,
            "members": [with_links(m) for m in group.members]}


@bp.get("/duplicates")
@operation(DuplicatesAnswer, query=DuplicatesQuery, errors=(400, 401, 404, 409))
def duplicates():
    """A page of the dataset's duplicate groups (of one tier, or all), with the totals of every tier."""
    asked = query_args()
    limit = min(asked.limit, settings().max_k)
    finder: DuplicateFinder = current_app.extensions["duplicates"]
    report = finder.report(asked.dataset, asked.near, asked.similar, asked.videos)
    groups = [g for g in report.groups if asked.tier in (None, g.tier)]
    end = asked.offset + limit
    return jsonify({"dataset": report.dataset, "tier": asked.tier, "images": len(report.paths),
                    "thresholds": {**report.thresholds.to_dict(), "defaults": report.thresholds.defaults,
                                   "near_bits": NEAR_DISTANCE},
                    "totals": {name: asdict(total) for name, total in report.totals().items()},
                    "total": len(groups), "offset": asked.offset, "limit": limit,
                    "next_offset": end if end < len(groups) else None,
                    "groups": [group_json(g) for g in groups[asked.offset:end]]})


@bp.get("/evaluations")
@operation(EvaluationsAnswer, query=EvaluationsQuery, errors=(400, 401, 404))
def evaluations():
    """The figures of each model evaluated on a dataset's class folders (python -m lib.evaluate --dataset)."""
    found = dataset_evaluations(service().indexes, query_args().dataset)
    return jsonify({"model": service().indexes.current().model.to_dict(),
                    "datasets": [{"dataset": name, "evaluations": entries} for name, entries in found.items()]})


@bp.get(f"/images/{IMAGE_ID}")
@operation(query=SignedLink, errors=(400, 401, 404))
def image(image_id: int):
    """The indexed image's file (a HEIC as a JPEG, which every browser shows), found through the catalog only, and
    only while it is inside its dataset's folder and the file indexed (lib/data/dataset_files.py)."""
    record = service().record(image_id)
    file = service().image_file(record)
    if not needs_browser_copy(record):
        return file_answer(file, record)
    with file:
        converted = browser_copy(file, record, settings().cache_dir / "converted")
    return send_file(converted, mimetype="image/jpeg", max_age=MAX_AGE)


@bp.get(f"/videos/{IMAGE_ID}")
@operation(query=SignedLink, errors=(400, 401, 404, 416))
def video(image_id: int):
    """The video file of a scene, with HTTP range requests (206 Partial Content; 416 for a range outside it), so
    that a browser's <video> can seek; found and checked as /images are. A picture's id is not found here."""
    record = service().record(image_id)
    if record.media != "video":
        raise NotFoundError(f"image {image_id} is a picture, not a scene of a video; /images/{image_id} serves it")
    return file_answer(service().image_file(record), record)


@bp.get(f"/images/{IMAGE_ID}/text")
@operation(ImageTextAnswer, errors=(400, 401, 404))
def image_text(image_id: int):
    """The words OCR read in an indexed image: each box's text, confidence and corners, and the whole text."""
    record, words = service().image_words(image_id)
    return jsonify({"id": image_id, "read": words is not None, "problem": words.problem if words else "",
                    "text": words.text if words else "", "width": record.width, "height": record.height,
                    "boxes": [box.as_json() for box in words.boxes] if words else []})


@bp.get(f"/thumbnails/{IMAGE_ID}")
@operation(query=ThumbnailQuery, errors=(400, 401, 404))
def thumbnail_of(image_id: int):
    """A JPEG thumbnail of an indexed image, made once and cached."""
    record = service().record(image_id)
    with service().image_file(record) as source:
        path = thumbnail(source, record, query_args().size, settings().cache_dir / "thumbnails")
    return send_file(path, mimetype="image/jpeg", max_age=MAX_AGE)


@bp.get("/metrics")
@operation(errors=(401,))
def metrics():
    """Prometheus text format: requests, latency, encode time, index sizes, build and model identity."""
    return metrics_text()


@bp.get("/openapi.json")
@public
def openapi():
    return jsonify(openapi_document())


@bp.get("/config.json")
@public
@operation(ConfigAnswer, errors=())
def config():
    """Where the pages find the API: here, unless they are opened as files and told otherwise."""
    return jsonify({"api": request.host_url.rstrip("/")})


@bp.get("/")
@public
def index_page():
    return send_from_directory(FRONTEND, "index.html")


class FileNameConverter(PathConverter):
    """A path that ends in a file name with an extension, so that /search and friends are not pages."""

    regex = r"[^/](?:[^/]*/)*[^/]*\.[A-Za-z0-9]+"


@bp.get("/<file:name>")
@public
def page(name: str):
    """The pages and their assets; send_from_directory refuses any path that leaves frontend/."""
    return send_from_directory(FRONTEND, name)
