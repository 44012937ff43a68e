"""Every limit on a request, in one place: taken from the settings, enforced by the models, shown in the spec.

The request models are declared once, at import, but the limits come from each app's settings. So a
bounded field carries a `Limit` marker instead of a number: at validation it reads the bound from the
app handling the request, and the spec served at /openapi.json has the number filled in (`fill_limits`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from flask import current_app
from pydantic_core import PydanticCustomError, core_schema

from lib.settings import Settings

MAX_IMAGE_ID = 2**63 - 1  # SQLite's INTEGER range: a larger id cannot name an image
MAX_PARTITIONS = 1000  # partitions named in one request
LIMIT_KEY = "x-limit"


@dataclass(frozen=True)
class Limits:
    """What one request may carry. Bodies over the byte limits get 413, everything else 400."""

    query_chars: int
    caption_chars: int
    captions: int
    images: int
    upload_pixels: int
    request_pixels: int
    upload_bytes: int
    json_bytes: int
    json_depth: int
    k: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(query_chars=settings.max_query_chars, caption_chars=settings.max_caption_chars,
                   captions=settings.max_captions, images=settings.max_images,
                   upload_pixels=settings.max_upload_pixels, request_pixels=settings.max_request_pixels,
                   upload_bytes=settings.max_upload_mb * 1024 * 1024, json_bytes=settings.max_json_kb * 1024,
                   json_depth=settings.max_json_depth, k=settings.max_k)

    def form_field_bytes(self) -> int:
        """The largest text field of a multipart form: the longest text in UTF-8 (up to 4 bytes a character), but
        no less than 512 KiB, since werkzeug holds this much of the form at once while it reads (64 KiB at a time)."""
        return max(512 * 1024, 4 * max(self.query_chars, self.caption_chars) + 1024)

    def form_parts(self) -> int:
        """The most parts a valid form can have: every list at its longest, and a few single fields."""
        return self.captions + 2 * self.images + MAX_PARTITIONS + 32

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def current_limits() -> Limits:
    return current_app.extensions["clipsearch.limits"]


@dataclass(frozen=True)
class Limit:
    """`Annotated[str, Limit("query_chars")]`: at most that many characters (or items, for a list).

    The check runs before the value's own validation, so a 10 MB string or a list of a million items is
    refused without being looked at further.
    """

    name: str

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.no_info_before_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema, handler: Any) -> dict[str, Any]:
        return {**handler(schema), LIMIT_KEY: self.name}

    def _check(self, value: Any) -> Any:
        if isinstance(value, (str, list)):
            bound = getattr(current_limits(), self.name)
            if len(value) > bound:
                what = "characters" if isinstance(value, str) else "items"
                raise PydanticCustomError("too_long", "at most {bound} {what}, not {length}",
                                          {"bound": bound, "what": what, "length": len(value)})
        return value


def fill_limits(node: Any, limits: Limits) -> Any:
    """A copy of a spec with every `x-limit` marker turned into maxLength or maxItems with the number."""
    if isinstance(node, list):
        return [fill_limits(item, limits) for item in node]
    if not isinstance(node, dict):
        return node
    filled = {key: fill_limits(value, limits) for key, value in node.items() if key != LIMIT_KEY}
    if LIMIT_KEY in node:
        keyword = "maxItems" if node.get("type") == "array" else "maxLength"
        filled[keyword] = getattr(limits, node[LIMIT_KEY])
    return filled
