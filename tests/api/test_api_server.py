"""The real scripts/api.sh: nginx in front of gunicorn, over loopback."""
import os
import signal
import socket
import time
from urllib.parse import urlsplit

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from bench.api_load import SlowClients, gunicorn_processes, probe

pytestmark = pytest.mark.slow


def workers_of(process) -> set[int]:
    """The gunicorn workers under api.sh (the master is the gunicorn process whose parent is not gunicorn)."""
    found = set(gunicorn_processes(process.pid))
    parents = {pid: int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1]) for pid in found}
    return {pid for pid, parent in parents.items() if parent in found}


def raw(base: str, request: bytes, wait: float = 5.0) -> tuple[bytes, bytes]:
    """Send bytes as they are; the answer's head and body (empty when the server closed without one).

    Reads up to the end of the answer's body, not up to the close: after a 413 nginx keeps reading what the
    client sends for lingering_timeout (5 s) before it closes.
    """
    url = urlsplit(base)
    with socket.create_connection((url.hostname, url.port), timeout=wait) as sock:
        sock.sendall(request)
        data = b""
        while not complete(data) and (chunk := sock.recv(65536)):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


def complete(data: bytes) -> bool:
    """Whether `data` holds a whole answer with a Content-Length."""
    head, found, body = data.partition(b"\r\n\r\n")
    lengths = [line.split(b":", 1)[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
    return bool(found and lengths) and len(body) >= int(lengths[0])


def test_the_real_server_answers_through_nginx(live_server):
    base, _ = live_server
    health = requests.get(f"{base}/health")
    assert health.json()["datasets"] == 1 and health.headers["Server"] == "nginx", \
        "nginx is not in front: run scripts/setup_nginx.sh"
    results = requests.post(f"{base}/search", json={"query": "red circle", "k": 3}).json()["results"]
    assert len(results) == 3
    assert requests.get(base + results[0]["thumbnail_url"]).headers["Content-Type"] == "image/jpeg"
    bad = requests.post(f"{base}/search", data="{", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and bad.json()["error"] == "malformed JSON"
    assert requests.get(f"{base}/").status_code == 200


@pytest.mark.parametrize("request_, status, error", [
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri too long"),
    (b"GARBAGE\r\n\r\n", 400, "bad request"),
    (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 10_000 + b"\r\n\r\n", 400, "bad request"),
    (b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 30000000\r\n\r\n", 413,
     "request entity too large"),
    (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404, "not found"),
    (b"TRACE /health HTTP/1.1\r\nHost: x\r\n\r\n", 405, "method not allowed"),
])
def test_refusals_before_the_app_are_json_too(live_server, request_, status, error):
    head, body = raw(live_server[0], request_)
    assert head.split(b"\r\n")[0].split(b" ")[1] == str(status).encode()
    assert b"Content-Type: application/json" in head and f'"error": "{error}"'.encode() in body.replace(b'":"', b'": "')
    if status == 405:
        assert b"\r\nAllow: GET, HEAD, POST, OPTIONS" in head


def test_slow_clients_do_not_starve_the_server(live_server):
    base, _ = live_server
    with SlowClients(base, 64):
        health, health_failed = probe(base, "/health", 4.0, 0.05, 2.0)
        search, search_failed = probe(base, "/search", 2.0, 0.1, 5.0, {"query": "blue star", "k": 5})
    assert health_failed == 0 and len(health) > 20
    assert search_failed == 0 and len(search) > 5


def test_a_stalled_upload_is_dropped(live_server):
    started = time.monotonic()
    head, body = raw(live_server[0], b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                                     b"boundary=b\r\nContent-Length: 1000\r\n\r\n--b\r\n", wait=30)
    assert 2.5 < time.monotonic() - started < 20  # client_timeout is 3 s here
    assert head == b"" or b" 408 " in head.split(b"\r\n")[0]


def test_metrics_add_up_across_workers(live_server):
    base, process = live_server
    assert len(workers_of(process)) == 2
    for _ in range(12):
        assert requests.post(f"{base}/search", json={"query": "yellow", "k": 2}).status_code == 200
    text = requests.get(f"{base}/metrics").text
    counts = {tuple(sorted(s.labels.items())): s.value for f in text_string_to_metric_families(text)
              for s in f.samples if s.name == "clipsearch_http_requests_total"}
    assert counts[(("method", "POST"), ("route", "/search"), ("status", "200"))] >= 12
    assert "clipsearch_encode_seconds_bucket" in text and 'clipsearch_vectors{dataset="tiny"} 72.0' in text


def test_a_crashed_worker_is_replaced(live_server):
    base, process = live_server
    deadline = time.time() + 30
    while time.time() < deadline and len(workers_of(process)) != 2:  # /health answers once one worker is up
        time.sleep(0.2)
    workers = workers_of(process)
    assert len(workers) == 2
    killed = next(iter(workers))
    os.kill(killed, signal.SIGKILL)
    deadline, stable_since = time.time() + 30, None
    while time.time() < deadline:  # until two workers, neither the killed one, have been up for a second
        now = workers_of(process)
        ok = len(now) == 2 and killed not in now
        stable_since = (stable_since or time.time()) if ok else None
        if stable_since and time.time() - stable_since > 1:
            break
        time.sleep(0.2)
    assert len(workers_of(process)) == 2 and killed not in workers_of(process)
    for _ in range(6):
        assert requests.post(f"{base}/search", json={"query": "blue", "k": 2}).status_code == 200
