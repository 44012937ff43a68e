"""Every error leaves the API as JSON {"error": ..., "detail": ...} with a 4xx, never a traceback."""
from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from lib.errors import ClipSearchError, NotCalibratedError, NotFoundError, UnreadableImageError

log = logging.getLogger(__name__)


class BadRequest(Exception):
    """A request the API refuses, with the status and the words to say why."""

    def __init__(self, error: str, detail: str = "", status: int = 400) -> None:
        super().__init__(error)
        self.error, self.detail, self.status = error, detail, status


def error_response(status: int, error: str, detail: str = ""):
    response = jsonify({"error": error, "detail": detail})
    response.status_code = status
    return response


# lib's errors and how each leaves the API (Flask picks the handler of the most specific class).
DOMAIN_ERRORS = ((NotFoundError, 404, "not found"), (UnreadableImageError, 400, "unreadable image"),
                 (NotCalibratedError, 409, "not calibrated"), (ClipSearchError, 400, "cannot do that"))


def _domain_handler(status: int, error: str):
    return lambda err: error_response(status, error, str(err))


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(BadRequest)
    def bad_request(err: BadRequest):
        return error_response(err.status, err.error, err.detail)

    for kind, status, error in DOMAIN_ERRORS:
        app.register_error_handler(kind, _domain_handler(status, error))

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException):
        return error_response(err.code or 500, (err.name or "error").lower(), err.description or "")

    @app.errorhandler(Exception)
    def unexpected(err: Exception):
        log.exception("unexpected error")
        return error_response(500, "internal error", "the server hit an unexpected error; it has been logged")
