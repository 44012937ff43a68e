"""Every error leaves the API as JSON {"error": ..., "detail": ...} with a 4xx, never a traceback."""
from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify
from werkzeug.exceptions import (
    HTTPException,
    MethodNotAllowed,
    RequestedRangeNotSatisfiable,
    RequestEntityTooLarge,
    Unauthorized,
)

from api.limits import current_limits
from lib.errors import (
    ClipSearchError,
    NotCalibratedError,
    NotFoundError,
    QueryError,
    StoreUnavailableError,
    UnreadableImageError,
)

log = logging.getLogger(__name__)


class BadRequest(Exception):
    """A request the API refuses, with the status and the words to say why."""

    def __init__(self, error: str, detail: Any = "", status: int = 400, headers: dict[str, str] | None = None) -> None:
        super().__init__(error)
        self.error, self.detail, self.status, self.headers = error, detail, status, headers or {}


def error_response(status: int, error: str, detail: Any = "", headers: dict[str, str] | None = None):
    response = jsonify({"error": error, "detail": detail})
    response.status_code = status
    response.headers.update(headers or {})
    return response


# lib's errors and how each leaves the API (Flask picks the handler of the most specific class).
DOMAIN_ERRORS = ((NotFoundError, 404, "not found"), (UnreadableImageError, 400, "unreadable image"),
                 (NotCalibratedError, 409, "not calibrated"), (QueryError, 400, "bad query"),
                 (StoreUnavailableError, 503, "store unavailable"),
                 (ClipSearchError, 400, "cannot do that"))


def _domain_handler(status: int, error: str):
    headers = {"Retry-After": "5"} if status == 503 else None  # the database is back within seconds, or not soon
    return lambda err: error_response(status, error, str(err), headers)


def _http_detail(err: HTTPException) -> tuple[str, dict[str, str]]:
    """What werkzeug's own errors say, made specific: the body limit, the methods a route allows."""
    if isinstance(err, RequestEntityTooLarge):
        limits = current_limits()
        return (f"the body is over the limit: {limits.upload_bytes // 2**20} MiB for uploads, "
                f"{limits.json_bytes // 2**10} KiB for JSON, {limits.form_field_bytes()} bytes for one form field"), {}
    if isinstance(err, MethodNotAllowed) and err.valid_methods:
        methods = ", ".join(sorted(err.valid_methods))
        return f"this route takes {methods}", {"Allow": methods}
    if isinstance(err, RequestedRangeNotSatisfiable) and err.length is not None:
        return (f"the file holds {err.length} bytes; ask for a range within them",
                {"Content-Range": f"bytes */{err.length}"})
    if isinstance(err, Unauthorized):
        return err.description or "", {"WWW-Authenticate": "Bearer"}
    return err.description or "", {}


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(BadRequest)
    def bad_request(err: BadRequest):
        return error_response(err.status, err.error, err.detail, err.headers)

    for kind, status, error in DOMAIN_ERRORS:
        app.register_error_handler(kind, _domain_handler(status, error))

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException):
        detail, headers = _http_detail(err)
        return error_response(err.code or 500, (err.name or "error").lower(), detail, headers)

    @app.errorhandler(Exception)
    def unexpected(err: Exception):
        log.exception("unexpected error")
        return error_response(500, "internal error", "the server hit an unexpected error; it has been logged")
