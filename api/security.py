"""The optional API key, signed image links and CORS.

With `api_key` set, every route but the public ones (health, the pages, config.json, the spec) wants
`Authorization: Bearer KEY`, compared in constant time. An <img> cannot send that header, so the image
and thumbnail links in answers carry `sig`, an HMAC of the image id under the key: a link opens one
image and nothing else, and changing the key revokes every link. Browsers may call the API from any
origin while there is no key; with a key, only from the origins in `cors_origins`, except for routes whose
URL carries the key (clip-retrieval's, under /clip-retrieval/<key>/: the URL is the credential).
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Callable

from flask import Flask, Response, current_app, request

from api.errors import BadRequest
from lib.errors import SettingsError
from lib.settings import Settings

SIGNED_ENDPOINTS = ("api.image", "api.thumbnail_of")


def public(view: Callable) -> Callable:
    """Mark a view that answers without a key."""
    view.public = True  # type: ignore[attr-defined]  # read back by the key check
    return view


def is_public(app: Flask, endpoint: str | None) -> bool:
    view = app.view_functions.get(endpoint or "")
    return view is None or getattr(view, "public", False)


def signature(key: str, image_id: int) -> str:
    return hmac.new(key.encode(), f"image:{image_id}".encode(), hashlib.sha256).hexdigest()[:32]


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode())


def _authorised(key: str) -> bool:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and _same(token.strip(), key):
        return True
    image_id = (request.view_args or {}).get("image_id")
    return request.endpoint in SIGNED_ENDPOINTS and image_id is not None and \
        _same(request.args.get("sig", ""), signature(key, image_id))


def check_key() -> None:
    """before_request: refuse a request without the key, unless its route is public or it is a CORS preflight."""
    key = current_app.config["SETTINGS"].api_key
    if not key or request.method == "OPTIONS" or is_public(current_app, request.endpoint):
        return
    if not _authorised(key):
        raise BadRequest("unauthorized", "this server needs an API key: send 'Authorization: Bearer KEY' (the pages "
                         "take it from ?key=KEY once)", 401, {"WWW-Authenticate": "Bearer"})


def cors(response: Response) -> Response:
    """after_request: any origin without a key; with one, only the configured origins."""
    settings = current_app.config["SETTINGS"]
    origin = request.headers.get("Origin")
    allowed = [o.strip().rstrip("/") for o in settings.cors_origins.split(",") if o.strip()]
    view = current_app.view_functions.get(request.endpoint or "")
    if not settings.api_key or getattr(view, "any_origin", False):  # a key-bearing URL is its own credential
        response.headers["Access-Control-Allow-Origin"] = "*"
    elif origin and origin.rstrip("/") in allowed:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers.add("Vary", "Origin")
    else:
        return response
    response.headers["Access-Control-Allow-Headers"] = "Content-Type, Authorization"
    response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
    response.headers["Access-Control-Expose-Headers"] = "X-Clip-Retrieval-Ignored"
    return response


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may well be reachable from outside


def require_key_beyond_loopback(settings: Settings) -> None:
    """Refuse to serve a non-loopback address without a key, saying how to set one."""
    if not settings.api_key and not is_loopback(settings.host):
        raise SettingsError(f"listening on {settings.host} needs an API key: set CLIPSEARCH_API_KEY=<a long random "
                            "string> (or api_key in the config file), or listen on 127.0.0.1")


def register_security(app: Flask) -> None:
    app.before_request(check_key)
    app.after_request(cors)
