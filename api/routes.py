"""The HTTP routes: each turns a request into one lib/serve call and the answer into JSON."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from flask import Blueprint, Response, current_app, jsonify, request, send_file, send_from_directory, url_for
from werkzeug.exceptions import NotFound
from werkzeug.routing import PathConverter

from api import inputs
from api.errors import BadRequest
from lib.serve.duplicate_finder import DuplicateFinder
from lib.serve.duplicates import TIERS, DuplicateGroup
from lib.serve.figures import dataset_evaluations
from lib.serve.search import DUPLICATE_THRESHOLD, SearchHit, SearchService
from lib.serve.thumbnails import thumbnail

bp = Blueprint("api", __name__)
FRONTEND = Path(__file__).resolve().parent.parent / "frontend"
OPENAPI = Path(__file__).resolve().parent / "openapi.json"
MAX_CAPTIONS = 256
MAX_IMAGES = 64


def service() -> SearchService:
    return current_app.extensions["clipsearch"]


def settings():
    return current_app.config["SETTINGS"]


def image_links(image_id: int) -> dict:
    return {"image_url": url_for("api.image", image_id=image_id),
            "thumbnail_url": url_for("api.thumbnail_of", image_id=image_id)}


def hit_json(hit: SearchHit) -> dict:
    return {**asdict(hit), **image_links(hit.id)}


@bp.get("/health")
def health():
    index_set = service().indexes.current()
    return jsonify({"status": "ok", "model": index_set.model.to_dict(), "datasets": len(index_set.datasets),
                    "vocabularies": len(index_set.vocabularies)})


@bp.get("/indexes")
def indexes():
    index_set = service().indexes.current()
    datasets = [{
        "name": name, "layout": d.record.layout, "index_type": d.record.index_type, "count": d.count,
        "partitions": [{"name": p.record.name, "class_name": p.class_name, "count": p.record.count}
                       for p in d.partitions.values()],
    } for name, d in sorted(index_set.datasets.items())]
    vocabularies = [{"name": name, "entries": len(v.entries), "templates": list(v.templates)}
                    for name, v in sorted(index_set.vocabularies.items())]
    left_out = [{"what": what, "why": why} for what, why in sorted(index_set.left_out.items())]
    return jsonify({"model": index_set.model.to_dict(), "datasets": datasets, "vocabularies": vocabularies,
                    "left_out": left_out})


@bp.post("/search")
def search():
    values, notes = inputs.params(), []
    query = inputs.text(values, "query", required=True)
    k = inputs.top_k(values, settings().max_k, notes)
    hits = service().search_text(query, k, inputs.text(values, "dataset"), inputs.string_list(values, "partitions"))
    return jsonify({"query": query, "k": k, "results": [hit_json(h) for h in hits], "notes": notes})


def image_query() -> tuple[dict, list[str], object, int | None, int]:
    """The parameters, notes, image (or image id) and k of a request about one image."""
    values, notes = inputs.params(), []
    image, image_id = inputs.one_image(values)
    return values, notes, image, image_id, inputs.top_k(values, settings().max_k, notes)


@bp.post("/classify")
def classify():
    values, notes, image, image_id, k = image_query()
    vocabulary, labels = service().classify(k, inputs.text(values, "vocab"), image, image_id)
    return jsonify({"vocab": vocabulary, "k": k, "labels": [asdict(label) for label in labels], "notes": notes})


@bp.post("/similar")
def similar():
    values, notes, image, image_id, k = image_query()
    threshold = inputs.number(values, "threshold", DUPLICATE_THRESHOLD)
    if not -1.0 <= threshold <= 1.0:
        raise BadRequest("bad threshold", f"threshold is a cosine similarity between -1 and 1, not {threshold}")
    hits = service().similar(k, image, image_id, inputs.text(values, "dataset"),
                             inputs.string_list(values, "partitions"), inputs.flag(values, "duplicates"), threshold)
    return jsonify({"k": k, "image_id": image_id, "results": [hit_json(h) for h in hits], "notes": notes})


@bp.post("/similarity")
def similarity():
    values = inputs.params()
    captions = inputs.string_list(values, "captions") or []
    captions = [c.strip() for c in captions if c.strip()]
    images = inputs.uploaded_images("images")
    ids = inputs.integer_list(values, "image_ids")
    if not (images or ids) or not captions:
        raise BadRequest("missing input", "give at least one image (uploads in 'images' or 'image_ids') "
                         "and one non-empty caption in 'captions'")
    if len(images) + len(ids) > MAX_IMAGES or len(captions) > MAX_CAPTIONS:
        raise BadRequest("too many inputs", f"at most {MAX_IMAGES} images and {MAX_CAPTIONS} captions per request")
    result = service().similarity(captions, images, ids)
    return jsonify({"captions": captions, "image_ids": ids, "matrix": result.scores.astype(float).round(6).tolist(),
                    "pairs": result.pairs})


def group_json(group: DuplicateGroup) -> dict:
    return {"group": group.number, "tier": group.tier, "bytes_freed": group.bytes_freed, "keeper": group.keeper.id,
            "members": [{**asdict(m), **image_links(m.id)} for m in group.members]}


def optional_number(values, name: str) -> float | None:
    return None if values.get(name) in (None, "") else inputs.number(values, name, 0.0)


@bp.get("/duplicates")
def duplicates():
    """A page of the dataset's duplicate groups (of one tier, or all), with the totals of every tier."""
    values = request.args
    tier = inputs.text(values, "tier")
    if tier not in (None, *TIERS):
        raise BadRequest("bad tier", f"tier is one of {', '.join(TIERS)} (or absent for all), not {tier!r}")
    offset, limit = inputs.integer(values, "offset", 0), inputs.integer(values, "limit", 20)
    if offset < 0 or not 1 <= limit <= settings().max_k:
        raise BadRequest("bad page", f"offset must be at least 0 and limit between 1 and {settings().max_k}")
    finder: DuplicateFinder = current_app.extensions["duplicates"]
    report = finder.report(inputs.text(values, "dataset"), optional_number(values, "near"),
                           optional_number(values, "similar"))
    groups = [g for g in report.groups if tier in (None, g.tier)]
    end = offset + limit
    return jsonify({"dataset": report.dataset, "tier": tier, "images": len(report.paths),
                    "thresholds": report.thresholds.to_dict(),
                    "totals": {name: asdict(total) for name, total in report.totals().items()},
                    "total": len(groups), "offset": offset, "limit": limit,
                    "next_offset": end if end < len(groups) else None,
                    "groups": [group_json(g) for g in groups[offset:end]]})


@bp.get("/evaluations")
def evaluations():
    """The figures of each model evaluated on a dataset's class folders (python -m lib.evaluate --dataset)."""
    found = dataset_evaluations(service().indexes, inputs.text(request.args, "dataset"))
    return jsonify({"model": service().indexes.current().model.to_dict(),
                    "datasets": [{"dataset": name, "evaluations": entries} for name, entries in found.items()]})


@bp.get("/images/<int:image_id>")
def image(image_id: int):
    path = service().image_path(service().record(image_id))
    if not path.is_file():
        raise NotFound(f"the file of image {image_id} is gone from the dataset; re-run the builder")
    return send_file(path, max_age=3600)


@bp.get("/thumbnails/<int:image_id>")
def thumbnail_of(image_id: int):
    size = inputs.integer(request.args, "size", 256)
    if not 16 <= size <= 1024:
        raise BadRequest("bad size", f"size must be between 16 and 1024 pixels, not {size}")
    record = service().record(image_id)
    path = thumbnail(service().image_path(record), record, size, settings().cache_dir / "thumbnails")
    return send_file(path, mimetype="image/jpeg", max_age=3600)


@bp.get("/openapi.json")
def openapi():
    return Response(OPENAPI.read_text(), mimetype="application/json")


@bp.get("/config.json")
def config():
    """Where the pages find the API: here, unless they are opened as files and told otherwise."""
    return jsonify({"api": request.host_url.rstrip("/")})


@bp.get("/")
def index_page():
    return send_from_directory(FRONTEND, "index.html")


class FileNameConverter(PathConverter):
    """A path that ends in a file name with an extension, so that /search and friends are not pages."""

    regex = r"[^/](?:[^/]*/)*[^/]*\.[A-Za-z0-9]+"


@bp.get("/<file:name>")
def page(name: str):
    """The pages and their assets; send_from_directory refuses any path that leaves frontend/."""
    return send_from_directory(FRONTEND, name)
