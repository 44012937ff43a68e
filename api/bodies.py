"""Reading a request body safely: JSON that cannot 500, forms whose file parts keep their bytes, and the limits.

Why not Flask's own JSON parser: Python's `json` raises RecursionError on deeply nested input (a 500),
reads `1e400` as infinity and `NaN` as a number, and passes unpaired surrogates ("\\ud800") through to
the tokenizer. pydantic-core's parser (jiter) has a nesting limit, refuses NaN/Infinity and lone surrogates,
and raises ValueError for all of them, which becomes a 400.
"""
from __future__ import annotations

from typing import Any

import pydantic_core
from flask import Request, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.datastructures import Headers
from werkzeug.formparser import FormDataParser, MultiPartParser

from api.errors import BadRequest
from api.limits import current_limits


class SafeJSONProvider(DefaultJSONProvider):
    """Parses with pydantic-core (see the module docstring); answers keep their keys in order."""

    sort_keys = False

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return pydantic_core.from_json(s, allow_inf_nan=False)


class FilePartsParser(MultiPartParser):
    """Reads a part that has a content type but no file name (RFC 7578 allows it; browsers always name files,
    some scripts and fuzzers do not) as latin-1, which keeps every byte; werkzeug would decode it as UTF-8
    text and lose bytes. `UploadedImage` turns such a part back into a file."""

    def get_part_charset(self, headers: Headers) -> str:
        if not headers.get("content-type", "text/plain").lower().startswith("text/"):
            return "latin-1"
        return super().get_part_charset(headers)


class FormParser(FormDataParser):
    def _parse_multipart(self, stream: Any, mimetype: str, content_length: int | None, options: dict[str, str]
                         ) -> Any:
        boundary = options.get("boundary", "").encode("ascii")
        if not boundary:
            raise ValueError("Missing boundary")
        parser = FilePartsParser(stream_factory=self.stream_factory, max_form_memory_size=self.max_form_memory_size,
                                 max_form_parts=self.max_form_parts, cls=self.cls)
        form, files = parser.parse(stream, boundary, content_length)
        return stream, form, files


class ApiRequest(Request):
    form_data_parser_class = FormParser

    def on_json_loading_failed(self, e: ValueError | None) -> Any:
        raise BadRequest("malformed JSON", str(e)[:200] if e else "the body is not JSON")


def json_depth_over(value: Any, limit: int) -> bool:
    """Whether arrays and objects nest deeper than `limit` (iterative: no recursion to run out of)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def read_json_body(force: bool = False) -> None:
    """Parse the body now, loudly (spectree parses silently and would report 'field required'); with `force`,
    whatever its content type says."""
    limits = current_limits()
    if (request.content_length or 0) > limits.json_bytes or len(request.get_data()) > limits.json_bytes:
        raise BadRequest("request entity too large", f"a JSON body may hold at most {limits.json_bytes // 1024} KiB",
                         413)
    body = request.get_json(force=force)
    if not isinstance(body, dict):
        raise BadRequest("malformed JSON", "the body must be a JSON object")
    data = request.get_data()
    brackets = data.count(b"[") + data.count(b"{")  # fewer than the limit cannot nest deeper: no walk needed
    if brackets > limits.json_depth and json_depth_over(body, limits.json_depth):
        raise BadRequest("malformed JSON", f"arrays and objects nest deeper than {limits.json_depth} levels")
