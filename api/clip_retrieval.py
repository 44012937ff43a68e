"""clip-retrieval's back-end routes (`/indices-list`, `/knn-service`, `/metadata`), so that its ClipClient and
clip-front work against this server unchanged (lib/serve/clip_protocol.py maps the terms).

Both clients send JSON without a JSON content type (ClipClient posts a string, clip-front a text/plain body, which
spares it a CORS preflight), so these routes read any body as JSON. Neither sends credentials: with a key, the
routes are also mounted under `/clip-retrieval/<key>/`, a URL that is then a secret, which any origin may call.
The answers are clip-retrieval's bare lists; an option that cannot be honoured is named in the
`X-Clip-Retrieval-Ignored` header, since those lists have no place for notes.
"""
from __future__ import annotations

import base64
import binascii
import functools
import hmac
from collections.abc import Callable
from typing import Annotated, Any, Literal

import numpy as np
from flask import Blueprint, abort, jsonify, request
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, RootModel

from api.errors import BadRequest
from api.limits import MAX_IMAGE_ID, current_limits
from api.models import Name, Query, integral
from api.routes import UPLOAD_SIDE, image_link, service, settings
from api.security import public
from api.validation import body, operation
from lib.data.images import open_image
from lib.serve import clip_protocol
from lib.serve.remote_image import fetch_image

clip_bp = Blueprint("clip_retrieval", __name__)
KEY_PREFIX = "/clip-retrieval/<key>"
IGNORED_HEADER = "X-Clip-Retrieval-Ignored"
MAX_URL_CHARS = 2048
Count = Annotated[int, Field(ge=1), BeforeValidator(integral)]


def _blank_is_none(value: Any) -> Any:
    """clip-front sends "" for the inputs it does not use."""
    return None if isinstance(value, str) and not value.strip() else value


Blank = BeforeValidator(_blank_is_none)


class KnnBody(BaseModel):
    """What clip_back.py's KnnService reads; other fields are ignored, as there."""

    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False)
    text: Annotated[Query | None, Blank] = None
    image: Annotated[str | None, Blank] = Field(None, description="a picture, base64")
    image_url: Annotated[Annotated[str, Field(max_length=MAX_URL_CHARS)] | None, Blank] = None
    embedding_input: Annotated[list[float], Field(min_length=1, max_length=8192)] | None = None
    modality: Literal["image", "text"] = "image"
    num_images: Count = 40
    num_result_ids: Count | None = None
    indice_name: Name | None = None
    deduplicate: bool = False
    use_safety_model: bool = False
    use_violence_detector: bool = False
    use_mclip: bool = False
    aesthetic_score: Annotated[int, BeforeValidator(integral)] | str | None = None
    aesthetic_weight: float | str | None = None


class MetadataBody(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False)
    ids: Annotated[list[Annotated[int, Field(ge=0, le=MAX_IMAGE_ID), BeforeValidator(integral)]],
                   Field(max_length=10_000)]
    indice_name: Name | None = None


class KnnHit(BaseModel):
    """One result as clip-retrieval gives it, with this server's fields beside (path, class_name, size...)."""

    model_config = ConfigDict(extra="allow")
    id: int
    similarity: float
    caption: str
    url: str | None = Field(None, description="the image (signed when there is a key); none for a vocabulary entry")


class KnnAnswer(RootModel[list[KnnHit]]):
    pass


class IndicesAnswer(RootModel[list[str]]):
    pass


class MetadataEntry(BaseModel):
    id: int
    metadata: dict[str, Any]


class MetadataAnswer(RootModel[list[MetadataEntry]]):
    pass


def _picture(asked: KnnBody) -> Any:
    limits = current_limits()
    if asked.image:
        try:
            data = base64.b64decode(asked.image, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("invalid request", "image: not base64") from None
    else:
        if not settings().allow_image_urls:
            raise BadRequest("invalid request", "image_url: this server does not fetch URLs (allow_image_urls is "
                             "off); send the picture itself as `image` (base64)")
        data = fetch_image(str(asked.image_url), limits.upload_bytes)
    return open_image(data, max_pixels=limits.upload_pixels, max_side=UPLOAD_SIDE)


def _query(asked: KnnBody) -> clip_protocol.KnnQuery:
    """The first of text, image, image_url and embedding_input that is given, as clip_back.py takes them."""
    text = asked.text
    image = _picture(asked) if text is None and (asked.image or asked.image_url) else None
    embedding = (np.asarray(asked.embedding_input, np.float32) if text is None and image is None and
                 asked.embedding_input else None)
    if text is None and image is None and embedding is None:
        raise BadRequest("invalid request", "give one of text, image, image_url and embedding_input")
    return clip_protocol.KnnQuery(asked.indice_name, asked.modality, min(asked.num_result_ids or asked.num_images,
                                  settings().max_k), text, image, embedding, asked.deduplicate)


def _external_link(image_id: int) -> str:
    return request.host_url.rstrip("/") + image_link("api.image", image_id)


@clip_bp.get("/indices-list")
@operation(IndicesAnswer, errors=(400, 401, 404))
def indices_list():
    """The datasets, as clip-retrieval's index names."""
    return jsonify(clip_protocol.datasets(service()))


@clip_bp.post("/knn-service")
@operation(KnnAnswer, json=KnnBody, errors=(400, 401, 404), any_content_type=True)
def knn_service():
    """Nearest images (or texts) to a text, a picture or an embedding, in clip-retrieval's result format."""
    asked, raw = body(), request.get_json(force=True)
    results = clip_protocol.knn(service(), _query(asked))
    answer = jsonify([{**r.fields, "id": r.id, "similarity": r.similarity, "caption": r.caption,
                       **({"url": _external_link(r.image_id)} if r.image_id is not None else {})} for r in results])
    ignored = clip_protocol.ignored_options(raw)
    if ignored:
        answer.headers[IGNORED_HEADER] = ", ".join(ignored)
    return answer


@clip_bp.post("/metadata")
@operation(MetadataAnswer, json=MetadataBody, errors=(400, 401, 404), any_content_type=True)
def metadata():
    """The fields of the images with these ids, as clip-retrieval's metadata."""
    asked = body()
    return jsonify(clip_protocol.metadata(service(), asked.ids, asked.indice_name, _external_link))


def _keyed(view: Callable[[], Any]) -> Callable[[str], Any]:
    """`view` under KEY_PREFIX: public (the key is in the path) and open to any origin (the URL is the secret)."""
    @functools.wraps(view)  # spectree's marks too: the keyed routes are documented like the plain ones
    def keyed(key: str) -> Any:
        expected = settings().api_key
        if not expected or not hmac.compare_digest(key.encode("utf-8", "surrogateescape"), expected.encode()):
            abort(404)
        return view()
    keyed.__name__ = f"{view.__name__}_keyed"
    keyed.any_origin = True  # type: ignore[attr-defined]  # read by api/security.cors
    return public(keyed)


clip_bp.add_url_rule(f"{KEY_PREFIX}/indices-list", view_func=_keyed(indices_list), methods=["GET"])
clip_bp.add_url_rule(f"{KEY_PREFIX}/knn-service", view_func=_keyed(knn_service), methods=["POST"])
clip_bp.add_url_rule(f"{KEY_PREFIX}/metadata", view_func=_keyed(metadata), methods=["POST"])
