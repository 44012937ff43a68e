"""gunicorn's logger, with the API key masked wherever a logged request carries it.

clip-retrieval's clients cannot send the key, so their routes take it in the path (`/clip-retrieval/<key>/...`,
api/clip_retrieval.py), and clip-front's own URL holds it in `?back=`, which a browser sends on as the Referer.
The access log would then hold the key in plain text: every atom of a log line (request line, path, query,
headers, environment) has it replaced by MASK before the line is written.
"""
from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger

from lib.settings import load_settings

MASK = "<key>"


class KeyMaskingLogger(Logger):
    """logger_class = "api.gunicorn_logger.KeyMaskingLogger" (api/gunicorn_conf.py)."""

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self.key = load_settings().api_key

    def atoms(self, resp: Any, req: Any, environ: dict, request_time: Any) -> dict:
        found = super().atoms(resp, req, environ, request_time)
        if not self.key:
            return found
        return {name: value.replace(self.key, MASK) if isinstance(value, str) else value
                for name, value in found.items()}
