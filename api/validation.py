"""Reading a request body safely and validating it with the models (spectree over pydantic).

Why not Flask's own JSON parser: Python's `json` raises RecursionError on deeply nested input (a 500),
reads `1e400` as infinity and `NaN` as a number, and passes unpaired surrogates ("\\ud800") through to
the tokenizer. pydantic-core's parser (jiter) has a nesting limit, refuses NaN/Infinity and lone surrogates,
and raises ValueError for all of them, which becomes a 400.

Why spectree: it validates a JSON body or a multipart form on the same route, each with its own model,
and documents both in the spec; it keeps Flask's app, blueprints and error handlers as they are
(flask-openapi3 validates both bodies at once, APIFlask brings marshmallow and loses repeated form fields).
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Iterable

import pydantic_core
from flask import Request, request
from flask import Response as FlaskResponse
from flask.json.provider import DefaultJSONProvider
from pydantic import BaseModel, ValidationError
from spectree import Response, SpecTree
from spectree.model_adapter.pydantic_adapter import PydanticModelAdapter
from spectree.plugins.flask_plugin import FlaskPlugin
from werkzeug.datastructures import Headers
from werkzeug.formparser import FormDataParser, MultiPartParser

from api.errors import BadRequest
from api.limits import current_limits
from api.models import ErrorBody

JSON, MULTIPART, URLENCODED = "application/json", "multipart/form-data", "application/x-www-form-urlencoded"
ERROR_TEXT = {
    400: "invalid request: a field out of its limits or of the wrong type, malformed or too deeply nested JSON",
    401: "no valid API key (send 'Authorization: Bearer KEY'); only when the server has a key",
    404: "no such dataset, partition, vocabulary or image",
    413: "the body is over the size limit (see x-limits)",
    415: "the body is neither JSON nor a form",
}


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


def field_errors(err: ValidationError) -> str:
    """pydantic's errors as one line, 'field: why; ...', without the input (a 10 MB query is not echoed back)."""
    return "; ".join(
        (".".join(str(part) for part in e["loc"]) + ": " if e["loc"] else "") + e["msg"].removeprefix("Value error, ")
        for e in err.errors(include_url=False, include_context=False, include_input=False))


class QuietAdapter(PydanticModelAdapter):
    """spectree's adapter, whose error lists carry no input (nor an uploaded file, which is no JSON)."""

    def validation_errors(self, err: ValidationError) -> Any:
        return {"error": "invalid request", "detail": field_errors(err)}


class FilesPassThrough(FlaskPlugin):
    """spectree's Flask plugin, which would read a file answer (send_file) into memory to validate it; not here."""

    def validate_response(self, resp: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(resp, FlaskResponse) and resp.direct_passthrough:
            return resp, None
        return super().validate_response(resp, *args, **kwargs)


def _refuse_invalid(req: Any, resp: Any, err: ValidationError | None, instance: Any, adapter: Any) -> None:
    """spectree's hook after validation: our error shape instead of its own."""
    if err is not None:
        raise BadRequest("invalid request", field_errors(err))


SPEC = SpecTree("flask", backend=FilesPassThrough, mode="strict", annotations=False, path="apidoc", validation_error_status=400,
                validation_error_model=ErrorBody, before=_refuse_invalid, model_adapter=QuietAdapter(),
                naming_strategy=lambda model: model.__name__, nested_naming_strategy=lambda _parent, child: child)


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


def read_json_body() -> None:
    """Parse the body now, loudly (spectree parses silently and would report 'field required')."""
    limits = current_limits()
    if (request.content_length or 0) > limits.json_bytes or len(request.get_data()) > limits.json_bytes:
        raise BadRequest("request entity too large", f"a JSON body may hold at most {limits.json_bytes // 1024} KiB",
                         413)
    body = request.get_json()
    if not isinstance(body, dict):
        raise BadRequest("malformed JSON", "the body must be a JSON object")
    if json_depth_over(body, limits.json_depth):
        raise BadRequest("malformed JSON", f"arrays and objects nest deeper than {limits.json_depth} levels")


def accepts(kinds: Iterable[str]) -> Callable:
    """Refuse other content types with 415 before spectree, which would take any body for JSON."""
    allowed = tuple(kinds)

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def checked(*args: Any, **kwargs: Any) -> Any:
            if request.mimetype not in allowed:
                raise BadRequest("unsupported content type",
                                 f"send {' or '.join(allowed)}, not {request.mimetype or 'no content type'}", 415)
            if request.mimetype == JSON:
                read_json_body()
            return view(*args, **kwargs)
        return checked
    return decorate


def operation(answer: type[BaseModel] | None = None, json: type[BaseModel] | None = None,
              form: type[BaseModel] | None = None, query: type[BaseModel] | None = None,
              errors: Iterable[int] = (400, 401)) -> Callable:
    """Validate a view's inputs with these models and document them, its answer and its errors."""
    codes = set(errors) | ({413, 415} if json or form else set())
    documented = {f"HTTP_{code}": (ErrorBody, ERROR_TEXT[code]) for code in sorted(codes)}
    validate = SPEC.validate(json=json, form=form, query=query, resp=Response(HTTP_200=answer, **documented))
    kinds = ([JSON] if json else []) + ([MULTIPART, URLENCODED] if form else [])
    return (lambda view: accepts(kinds)(validate(view))) if kinds else validate


def body() -> Any:
    """The validated body of this request, from whichever of JSON or form it came as."""
    return request.context.json or request.context.form


def query_args() -> Any:
    return request.context.query
