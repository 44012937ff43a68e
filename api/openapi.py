"""The OpenAPI document served at /openapi.json: spectree's, made from the models, completed for this app.

Completed with what only the app knows: the numbers of its limits (`x-limit` markers, and the whole
set under `x-limits` and in the description), the key when one is set (bearer, or a signed link for
images), and which image types an upload part may be.
"""
from __future__ import annotations

import copy
from typing import Any

from flask import Flask, current_app

from api.limits import Limits, fill_limits
from api.metrics import project_version
from api.security import is_public
from api.validation import SPEC

IMAGE_TYPES = "image/png, image/jpeg, image/webp, image/gif, image/bmp, image/tiff"
DESCRIPTION = """Search your own images by text, classify them against a vocabulary, find similar images and score
captions. Every refusal is JSON `{{"error", "detail"}}` with a 4xx status; `detail` lists the fields for an
invalid request.

Limits of one request (settings in brackets; also under `x-limits`): query {query_chars} characters
(`max_query_chars`); caption {caption_chars} characters (`max_caption_chars`); {captions} captions (`max_captions`);
{images} images, uploads and ids together (`max_images`); an uploaded picture {upload_pixels} pixels
(`max_upload_pixels`), all the pictures of a request {request_pixels} (`max_request_pixels`); body {upload_mib} MiB
as a multipart form (`max_upload_mb`),
{json_kib} KiB as JSON (`max_json_kb`); JSON nested at most {json_depth} levels (`max_json_depth`); k at most
{k} (`max_k`; a larger k is capped and the answer's `notes` say so). Over a size limit: 413; anything else: 400.
"""


def _describe(limits: Limits) -> str:
    return DESCRIPTION.format(**limits.as_dict(), upload_mib=limits.upload_bytes // 2**20,
                              json_kib=limits.json_bytes // 2**10)


def _image_parts(document: dict[str, Any]) -> None:
    """Say which media types an upload part may have (fuzzers then send images, not random bytes)."""
    for path in document["paths"].values():
        for op in path.values():
            multipart = op.get("requestBody", {}).get("content", {}).get("multipart/form-data")
            if not multipart:
                continue
            schema = document["components"]["schemas"][multipart["schema"]["$ref"].rsplit("/", 1)[1]]
            files = [name for name, prop in schema.get("properties", {}).items()
                     if "binary" in (prop.get("format"), prop.get("items", {}).get("format"))]
            multipart["encoding"] = {name: {"contentType": IMAGE_TYPES} for name in files}


def _secure(document: dict[str, Any], app: Flask) -> None:
    """Bearer on every operation but the public ones; the image routes also take a signed link."""
    document["components"]["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "the server's api_key"},
        "signed_link": {"type": "apiKey", "in": "query", "name": "sig",
                        "description": "the signature in image_url and thumbnail_url of an answer"}}
    document["security"] = [{"bearer": []}]
    for rule in app.url_map.iter_rules():
        path, _ = SPEC.backend.parse_path(rule, None)
        for op in document["paths"].get(path, {}).values():
            if is_public(app, rule.endpoint):
                op["security"] = []
            elif "image_id" in rule.arguments:
                op["security"] = [{"bearer": []}, {"signed_link": []}]


def build_document(app: Flask) -> dict[str, Any]:
    limits: Limits = app.extensions["clipsearch.limits"]
    document = fill_limits(copy.deepcopy(SPEC.spec), limits)
    document["info"] = {"title": "CLIP search", "version": project_version(), "description": _describe(limits)}
    document["x-limits"] = limits.as_dict()
    _image_parts(document)
    if app.config["SETTINGS"].api_key:
        _secure(document, app)
    else:
        document.pop("security", None)
    return document


def install_document(app: Flask) -> None:
    """Make the document when the app is made (spectree's first generation is not safe to run in two threads)."""
    with app.app_context():
        app.extensions["clipsearch.openapi"] = build_document(app)


def openapi_document() -> dict[str, Any]:
    return current_app.extensions["clipsearch.openapi"]
