"""gunicorn's gthread worker, whose own refusals (a bad or too long request line, bad headers) are JSON too.

gunicorn answers those before the app sees the request, with an HTML page written by
`gunicorn.util.write_error`, which `Worker.handle_error` looks up when it is called. Replacing that one
function (gunicorn is pinned in requirements.txt; tests/api/test_api_server.py checks the answers) is
smaller than overriding `handle_error`, which would copy its mapping of exceptions to statuses. Behind
nginx these limits are met in nginx first, and it answers in the same JSON shape (api/nginx.conf.template).
"""
from __future__ import annotations

import json
import socket

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker


def write_json_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    body = json.dumps({"error": reason.lower(), "detail": mesg}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
    util.write_nonblock(sock, head + body)


class JsonErrorWorker(ThreadWorker):
    """worker_class = "api.gunicorn_worker.JsonErrorWorker"."""

    def init_process(self) -> None:
        util.write_error = write_json_error
        super().init_process()
