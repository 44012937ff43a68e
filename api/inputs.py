"""Reading request inputs: JSON bodies, k, uploaded images and ids, each refused with a clear 4xx."""
from __future__ import annotations

from typing import Any

from flask import request
from PIL import Image

from api.errors import BadRequest
from lib.data.images import open_image


def is_multipart() -> bool:
    return request.mimetype in ("multipart/form-data", "application/x-www-form-urlencoded")


def params() -> dict[str, Any]:
    """The request's parameters: its JSON object, or its form fields (lists for repeated fields)."""
    if is_multipart():
        return {key: values if len(values) > 1 else values[0] for key, values in request.form.lists()}
    if request.mimetype != "application/json":
        raise BadRequest("unsupported content type", f"send application/json or multipart/form-data, "
                         f"not {request.mimetype or 'nothing'}", 415)
    body = request.get_json(silent=True)
    if body is None:
        raise BadRequest("malformed JSON", "the body is not valid JSON")
    if not isinstance(body, dict):
        raise BadRequest("malformed JSON", "the body must be a JSON object")
    return body


def integer(values: dict[str, Any], name: str, default: int | None = None) -> int | None:
    value = values.get(name, default)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise BadRequest(f"bad {name}", f"{name} must be a whole number")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise BadRequest(f"bad {name}", f"{name} must be a whole number, not {value!r}") from None


def number(values: dict[str, Any], name: str, default: float) -> float:
    value = values.get(name, default)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise BadRequest(f"bad {name}", f"{name} must be a number, not {value!r}") from None


def flag(values: dict[str, Any], name: str) -> bool:
    value = values.get(name, False)
    return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes", "on")


def text(values: dict[str, Any], name: str, required: bool = False) -> str | None:
    value = values.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise BadRequest(f"missing {name}", f"give a non-empty {name}")
        return None
    if not isinstance(value, str):
        raise BadRequest(f"bad {name}", f"{name} must be a string")
    return value.strip()


def string_list(values: dict[str, Any], name: str) -> list[str] | None:
    value = values.get(name)
    if value is None:
        return None
    value = [value] if isinstance(value, str) else value
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest(f"bad {name}", f"{name} must be a list of strings")
    return value


def integer_list(values: dict[str, Any], name: str) -> list[int]:
    value = values.get(name)
    if value is None or value == "":
        return []
    items = value if isinstance(value, list) else [value]
    return [integer({name: item}, name) for item in items]


def top_k(values: dict[str, Any], cap: int, notes: list[str]) -> int:
    """k from the request (10 by default); below 1 is refused, above the cap is capped and noted."""
    k = integer(values, "k", 10)
    if k < 1:
        raise BadRequest("bad k", f"k must be at least 1 (and at most {cap}), not {k}")
    if k > cap:
        notes.append(f"k={k} is over the limit; capped at {cap}")
        return cap
    return k


def uploaded_images(field: str) -> list[Image.Image]:
    files = request.files.getlist(field) if is_multipart() else []
    images = []
    for upload in files:
        data = upload.read()
        if not data:
            raise BadRequest("empty upload", f"the file {upload.filename!r} in field {field!r} is empty")
        images.append(open_image(data))
    return images


def one_image(values: dict[str, Any]) -> tuple[Image.Image | None, int | None]:
    """An uploaded image (multipart field `image`) or the id of an indexed one (`image_id`)."""
    images = uploaded_images("image")
    image_id = integer(values, "image_id")
    if len(images) > 1:
        raise BadRequest("too many images", "send one image in the field 'image'")
    if not images and image_id is None:
        raise BadRequest("missing image", "upload an image in the multipart field 'image' or give an image_id")
    return (images[0] if images else None), (None if images else image_id)
