"""Validating a request with the models (spectree over pydantic), and documenting it with the same models.

Why spectree: it validates a JSON body or a multipart form on the same route, each with its own model,
and documents both in the spec; it keeps Flask's app, blueprints and error handlers as they are
(flask-openapi3 validates both bodies at once, APIFlask brings marshmallow and loses repeated form fields).
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from flask import Response as FlaskResponse
from flask import request
from pydantic import BaseModel, ValidationError
from spectree import Response, SpecTree
from spectree.model_adapter.pydantic_adapter import PydanticModelAdapter
from spectree.plugins.flask_plugin import FlaskPlugin

from api.answers import ErrorBody
from api.bodies import read_json_body
from api.errors import BadRequest

JSON, MULTIPART, URLENCODED = "application/json", "multipart/form-data", "application/x-www-form-urlencoded"
ERROR_TEXT = {
    400: "invalid request: a field out of its limits or of the wrong type, malformed or too deeply nested JSON",
    401: "no valid API key (send 'Authorization: Bearer KEY'); only when the server has a key",
    404: "no such dataset, partition, vocabulary or image",
    409: "the dataset has no calibrated duplicate thresholds: give near and similar, or calibrate it",
    413: "the body is over the size limit (see x-limits)",
    415: "the body is neither JSON nor a form",
    416: ("the range asked for lies outside the file "
          "(Content-Range says its size)"),
}


def field_errors(err: ValidationError) -> str:
    """pydantic's errors as one line, 'field: why; ...', without the input (a 10 MB query is not echoed back)."""
    return "; ".join(
        (".".join(str(part) for part in e["loc"]) + ": " if e["loc"] else "") + e["msg"].removeprefix("Value error, ")
        for e in err.errors(include_url=False, include_context=False, include_input=False))


class QuietAdapter(PydanticModelAdapter):
    """spectree's adapter, whose error lists carry no input (nor an uploaded file, which is no JSON)."""

    def validation_errors(self, err: Exception) -> Any:
        return {"error": "invalid request",
                "detail": field_errors(err) if isinstance(err, ValidationError) else str(err)}


class FilesPassThrough(FlaskPlugin):
    """spectree's Flask plugin, which would read a file answer (send_file) into memory to validate it; not here."""

    def validate_response(self, resp: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(resp, FlaskResponse) and resp.direct_passthrough:
            return resp, None
        return super().validate_response(resp, *args, **kwargs)


def _refuse_invalid(req: Any, resp: Any, err: Exception | None, instance: Any, adapter: Any) -> None:
    """spectree's hook after validation: our error shape instead of its own."""
    if err is not None:
        raise BadRequest("invalid request", field_errors(err) if isinstance(err, ValidationError) else str(err))


# One per process: its spec is generated once and shared by every app (all have the same routes).
SPEC = SpecTree("flask", backend=FilesPassThrough, mode="strict", annotations=False, path="apidoc",
                validation_error_status=400, validation_error_model=ErrorBody, before=_refuse_invalid,
                model_adapter=QuietAdapter(),  # type: ignore[arg-type]  # pydantic's adapter, specialised
                naming_strategy=lambda model: model.__name__,
                nested_naming_strategy=lambda _parent, child: child)


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


def read_any_body_first(view: Callable) -> Callable:
    """Parse the body as JSON whatever its content type, before spectree (which parses only JSON types) reads
    the parsed body back: for clients that post JSON as text/plain or without a type (clip-retrieval's)."""
    @functools.wraps(view)
    def parsed(*args: Any, **kwargs: Any) -> Any:
        if request.mimetype in (MULTIPART, URLENCODED):  # spectree would read a form, and find no JSON
            raise BadRequest("unsupported content type", f"send JSON, not {request.mimetype}", 415)
        read_json_body(force=True)
        return view(*args, **kwargs)
    return parsed


def operation(answer: type[BaseModel] | None = None, json: type[BaseModel] | None = None,
              form: type[BaseModel] | None = None, query: type[BaseModel] | None = None,
              errors: Iterable[int] = (400, 401), any_content_type: bool = False) -> Callable:
    """Validate a view's inputs with these models and document them, its answer and its errors; with
    `any_content_type`, the body is JSON whatever its content type says."""
    codes = set(errors) | ({413, 415} if json or form else set())
    documented = {f"HTTP_{code}": (ErrorBody, ERROR_TEXT[code]) for code in sorted(codes)}
    validate = SPEC.validate(json=json, form=form, query=query, resp=Response(HTTP_200=answer, **documented))
    if any_content_type:
        return lambda view: read_any_body_first(validate(view))
    kinds = ([JSON] if json else []) + ([MULTIPART, URLENCODED] if form else [])
    return (lambda view: accepts(kinds)(validate(view))) if kinds else validate


def body() -> Any:
    """The validated body of this request, from whichever of JSON or form it came as."""
    return request.context.json or request.context.form  # type: ignore[attr-defined]  # set by spectree


def query_args() -> Any:
    return request.context.query  # type: ignore[attr-defined]  # set by spectree
