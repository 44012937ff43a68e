#!/usr/bin/env python3
"""Load on the live server (scripts/api.sh on loopback) over an index of 100,000 vectors.

N client threads send /search and /classify for a bounded time; the table gives requests/s,
p50/p99 latency, errors, and the memory of the server processes (PSS counts a shared page once,
split between its users). Run once with 1 worker and once with N to compare memory.
Targets (issue 4): /search p50 <= 1.5 x the text encoder's own time + 5 ms; errors 0;
memory of N workers well below N x one worker's.

Slow clients (issue 14): with N connections each trickling an upload at 1 byte/s, a prober asks for
/health every 50 ms (a fresh connection, 2 s timeout; a timeout counts as 2000 ms) while one client
sends /search; once with nginx in front (what scripts/api.sh starts) and once with gunicorn alone. With
nginx, the front end's own cost: /search p50 through nginx against straight to gunicorn's unix socket.
Target: with 64 slow connections, /health p99 < 200 ms and no /search errors.

    .venv/bin/python -m bench.api_load [--vectors 100000] [--clients 1 4] [--seconds 15] [--workers 2]
                                       [--model demo | random:ViT-B/32] [--slow 0 64] [--proxies nginx none]

--smoke: 2,000 vectors, 1 worker, 1 client, 2 slow connections, nginx only, 1 s a row (two server starts).
"""
from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import requests
from PIL import Image

from bench import SmokeParser, link_model_cache
from lib.cli import run
from lib.data.synthetic import class_names
from lib.data.vocabulary import VocabStats
from lib.ingest.text_index import build_text_index
from lib.model.loading import load_encoder
from lib.store.catalog import Catalog, DatasetRecord, ImageRecord
from lib.store.index_files import commit_partition
from lib.store.vocab_index import VocabEntry

REPO = Path(__file__).resolve().parent.parent
SMOKE = dict(vectors=2000, partitions=4, clients=[1], seconds=1.0, workers=1, model="demo", slow=[0, 2],
             proxies=["nginx"], front_requests=20)


def synthetic_index(workspace: Path, encoder, vectors: int, partitions: int) -> None:
    """A dataset of random unit vectors with catalog rows (no image files: search does not read them)."""
    rng = np.random.default_rng(0)
    folder = workspace / "indexes"
    folder.mkdir(parents=True)
    catalog = Catalog.in_folder(folder)
    with catalog.transaction() as db:
        catalog.put_dataset(db, DatasetRecord("synthetic", workspace / "none", "flat", "flat", encoder.identity))
    per = vectors // partitions
    for p in range(partitions):
        name = f"part{p:05d}"
        block = rng.normal(size=(per, encoder.dim)).astype(np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        ids = np.arange(p * per + 1, (p + 1) * per + 1)
        records = [ImageRecord(int(i), "synthetic", name, f"{i}.jpg", name, 64, 64, 1, 1, "0" * 64) for i in ids]
        commit_partition(catalog, folder, "synthetic", name, ids, block, added=records)
    entries = [VocabEntry(str(i), name) for i, name in enumerate(class_names())]
    build_text_index("demo", entries, VocabStats(), encoder, workspace / "indexes_text", workspace / "cache",
                     progress=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SERVER_START_S = 600.0  # a first start may convert the model (ViT-B/32: a minute on 2 busy cores), then compile it


def start_server(workspace: Path, model: str, workers: int, threads: int, proxy: str = "auto", **settings: str
                 ) -> tuple[subprocess.Popen, str]:
    """scripts/api.sh over the workspace (with any other settings given) on a free loopback port, once it
    answers /health; its log is
    workspace/api-PORT.log. nginx answers 502 until gunicorn has bound its socket, and a request then waits
    while the workers compile and warm up, so each try may time out: only the deadline ends the wait."""
    port = free_port()
    env = {**os.environ, "CLIPSEARCH_WORKSPACE": str(workspace), "CLIPSEARCH_MODEL": model,
           **{f"CLIPSEARCH_{name.upper()}": value for name, value in settings.items()}}
    log = workspace / f"api-{port}.log"
    with open(log, "w") as out:
        process = subprocess.Popen([str(REPO / "scripts" / "api.sh"), "--port", str(port), "--workers",
                                    str(workers), "--threads", str(threads), "--proxy", proxy], cwd=REPO, env=env,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        answered = wait_for_health(base, process)
    except BaseException:  # Ctrl-C while waiting: leave no server behind
        stop_server(process)
        raise
    if answered:
        return process, base
    why = f"stopped with status {process.poll()}" if process.poll() is not None else \
        f"did not answer /health in {SERVER_START_S:.0f} s"
    stop_server(process)
    lines = [line for line in log.read_text().splitlines() if "connect() to unix:" not in line]  # nginx's 502s
    raise SystemExit(f"the server (scripts/api.sh) {why}; the end of its log:\n" + "\n".join(lines)[-3000:])


def wait_for_health(base: str, process: subprocess.Popen) -> bool:
    """Whether /health answered 200 before the deadline, while the server runs."""
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if requests.get(f"{base}/health", timeout=5).ok:
                return True
        except requests.RequestException:  # not listening yet, or the request waited on warming workers
            pass
        time.sleep(0.5)
    return False


def stop_server(process: subprocess.Popen) -> None:
    """Stop api.sh and what it started (one session: nginx, gunicorn and its workers)."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    process.wait(timeout=60)


class SlowClients:
    """`count` connections that each send an upload's headers, then its body at one byte a second.

    Bounded: they stop when the block ends; `dropped` counts those the server closed.
    """

    def __init__(self, base: str, count: int, body_bytes: int = 100_000) -> None:
        self.address = urlsplit(base).hostname, urlsplit(base).port
        self.count, self.body_bytes = count, body_bytes
        self.stop = threading.Event()
        self.dropped = 0
        self.threads = [threading.Thread(target=self._trickle, daemon=True) for _ in range(count)]

    def _trickle(self) -> None:
        head = (f"POST /classify HTTP/1.1\r\nHost: {self.address[0]}\r\nContent-Type: multipart/form-data; "
                f"boundary=x\r\nContent-Length: {self.body_bytes}\r\n\r\n").encode()
        try:
            with socket.create_connection(self.address, timeout=5) as sock:
                sock.sendall(head)
                for _ in range(self.body_bytes):
                    if self.stop.wait(1.0):
                        return
                    sock.sendall(b"x")
        except OSError:
            self.dropped += 1

    def __enter__(self) -> SlowClients:
        for thread in self.threads:
            thread.start()
        time.sleep(2.0 if self.count else 0)  # let them connect and start trickling
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(10)


def probe(base: str, path: str, seconds: float, every: float, timeout: float, body: dict | None = None
          ) -> tuple[list[float], int]:
    """One request every `every` s on a fresh connection; latencies in ms (a failure counts as `timeout`)."""
    latencies, failures = [], 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        try:
            response = requests.request("POST" if body else "GET", base + path, json=body, timeout=timeout,
                                        headers={"Connection": "close"})
            ok = response.status_code == 200
        except requests.RequestException:
            ok = False
        elapsed = time.perf_counter() - started
        latencies.append(elapsed * 1000 if ok else timeout * 1000)
        failures += not ok
        time.sleep(max(0.0, every - elapsed))
    return latencies, failures


def under_slow_clients(base: str, count: int, seconds: float) -> dict:
    """/health and /search while `count` slow connections are open."""
    found: dict = {}

    def searches() -> None:
        found["search"] = probe(base, "/search", seconds, 0.2, 5.0, {"query": "red circle", "k": 10})

    with SlowClients(base, count) as slow:
        searcher = threading.Thread(target=searches)
        searcher.start()
        found["health"] = probe(base, "/health", seconds, 0.05, 2.0)
        searcher.join()
    found["dropped"] = slow.dropped
    return found


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over gunicorn's unix socket, to time a request without nginx in front."""

    def __init__(self, path: str) -> None:
        super().__init__("localhost")
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.socket_path)


def front_end_cost(base: str, root: int, requests_each: int) -> tuple[float, float]:
    """/search p50 in ms through nginx and straight to gunicorn's socket, alternating, one at a time."""
    command = Path(f"/proc/{gunicorn_processes(root)[0]}/cmdline").read_bytes().decode().split("\0")  # any of them
    socket_path = next(arg for arg in command if arg.startswith("unix:"))[len("unix:"):]
    url, body = urlsplit(base), json.dumps({"query": "red circle", "k": 10})
    through = http.client.HTTPConnection(url.hostname, url.port)
    times: dict[str, list[float]] = {"nginx": [], "direct": []}
    warm_up = min(100, requests_each)
    for i in range(requests_each + warm_up):
        for name, connection in (("nginx", through), ("direct", UnixHTTPConnection(socket_path))):
            started = time.perf_counter()
            connection.request("POST", "/search", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            assert response.status == 200, response.status
            if i >= warm_up:
                times[name].append((time.perf_counter() - started) * 1000)
    return percentile(times["nginx"], 50), percentile(times["direct"], 50)


def slow_rows(workspace: Path, args: argparse.Namespace) -> tuple[list[tuple], tuple[float, float] | None]:
    rows, cost = [], None
    for proxy in args.proxies:
        process, base = start_server(workspace, args.model, args.workers, args.threads, proxy)
        try:
            probe(base, "/search", min(2.0, args.seconds), 0.05, 5.0, {"query": "warm up", "k": 10})
            if proxy == "nginx":
                cost = front_end_cost(base, process.pid, args.front_requests)
            for count in args.slow:
                found = under_slow_clients(base, count, args.seconds)
                (health, health_failed), (search, search_failed) = found["health"], found["search"]
                rows.append((proxy, count, len(health) - health_failed, health_failed, percentile(health, 50),
                             percentile(health, 99), len(search) - search_failed, search_failed,
                             percentile(search, 99)))
        finally:
            stop_server(process)
    return rows, cost


def gunicorn_processes(root: int) -> list[int]:
    """The gunicorn master and workers started by api.sh (`root`), wherever they are in its process tree."""
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        try:
            if b"gunicorn" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            continue
        todo += [int(p) for p in subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                                                 text=True).stdout.split()]
    return found


def memory_mb(pids: list[int]) -> tuple[float, float]:
    """Summed RSS and PSS of these processes, in MiB."""
    rss = pss = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss += int(line.split()[1])
            elif line.startswith("Pss:"):
                pss += int(line.split()[1])
    return rss / 1024, pss / 1024


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def load(base: str, route: str, clients: int, seconds: float) -> tuple[list[float], int]:
    """Bounded in time: each client loops until the deadline; latencies in ms and the error count."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    image = png_bytes()
    queries = class_names() + ["red", "circle", "two small stars on a striped background"]
    deadline = time.monotonic() + seconds

    def client(seed: int) -> None:
        rng, session = random.Random(seed), requests.Session()
        while time.monotonic() < deadline:
            started = time.perf_counter()
            if route == "/search":
                response = session.post(base + route, json={"query": rng.choice(queries), "k": 10}, timeout=30)
            else:
                response = session.post(base + route, files={"image": ("q.png", image)}, data={"k": "5"}, timeout=30)
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                latencies.append(elapsed)
                errors[0] += response.status_code != 200

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors[0]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def text_encoder_ms(encoder, repeats: int = 50) -> float:
    queries = class_names()
    encoder.encode_texts(["warm up"])
    times = []
    for i in range(repeats):
        started = time.perf_counter()
        encoder.encode_texts([queries[i % len(queries)]])
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def make_parser() -> argparse.ArgumentParser:
    parser = SmokeParser(__doc__, SMOKE)
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=100)
    parser.add_argument("--clients", type=int, nargs="*", default=[1, 4],
                        help="client counts: 1 gives the latency of one request, more the throughput under load "
                             "(none: skip the load rows)")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default="demo", help="model spec the server loads (random:ViT-B/32 for full size)")
    parser.add_argument("--slow", type=int, nargs="*", default=[0, 64],
                        help="slow connections to hold open while probing /health and /search (none: skip)")
    parser.add_argument("--proxies", nargs="+", default=["nginx", "none"], choices=["nginx", "none"],
                        help="front ends for the slow-client rows: nginx before gunicorn, or gunicorn alone")
    parser.add_argument("--front-requests", type=int, default=1000,
                        help="/search requests each way (through nginx, straight to gunicorn) for the front end's cost")
    return parser


def load_rows(workspace: Path, args: argparse.Namespace) -> tuple[list[tuple], dict[int, tuple[float, float]]]:
    rows, memory = [], {}
    for workers in sorted({1, args.workers}):
        process, base = start_server(workspace, args.model, workers, args.threads)
        try:
            for route in ("/search", "/classify"):
                load(base, route, 1, min(2.0, args.seconds))  # warm-up: first touches of mapped indexes, lazy imports
            for clients in args.clients:
                for route in ("/search", "/classify"):
                    latencies, errors = load(base, route, clients, args.seconds)
                    rows.append((workers, clients, route, len(latencies) / args.seconds,
                                 percentile(latencies, 50), percentile(latencies, 99), errors))
            memory[workers] = memory_mb(gunicorn_processes(process.pid))
        finally:
            stop_server(process)
    return rows, memory


def print_load(rows: list[tuple], memory: dict[int, tuple[float, float]]) -> None:
    print("| workers | clients | route | req/s | p50 ms | p99 ms | errors |")
    print("|---|---|---|---|---|---|---|")
    for workers, clients, route, rate, p50, p99, errors in rows:
        print(f"| {workers} | {clients} | {route} | {rate:.1f} | {p50:.1f} | {p99:.1f} | {errors} |")
    print("\n| workers | RSS MiB (sum) | PSS MiB (sum) | PSS / (workers x 1-worker PSS) |")
    print("|---|---|---|---|")
    single = memory[1][1]
    for workers, (rss, pss) in sorted(memory.items()):
        print(f"| {workers} | {rss:.0f} | {pss:.0f} | {pss / (workers * single):.0%} |")


def print_slow(rows: list[tuple], cost: tuple[float, float] | None, args: argparse.Namespace) -> None:
    print(f"\nslow clients: {args.workers} workers x {args.threads} threads, {args.seconds:.0f} s per row; "
          "/health every 50 ms (2 s timeout, counted as 2000 ms), /search every 200 ms (5 s timeout)")
    print("| front end | slow connections | /health ok | /health failed | /health p50 ms | /health p99 ms "
          "| /search ok | /search errors | /search p99 ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for proxy, count, ok, failed, p50, p99, search_ok, search_failed, search_p99 in rows:
        front = "nginx -> gunicorn" if proxy == "nginx" else "gunicorn alone"
        print(f"| {front} | {count} | {ok} | {failed} | {p50:.1f} | {p99:.1f} | {search_ok} | {search_failed} "
              f"| {search_p99:.1f} |")
    if cost:
        print(f"\ncost of the front end: /search p50 {cost[0]:.2f} ms through nginx, {cost[1]:.2f} ms straight to "
              f"gunicorn's socket (alternating, one at a time): +{cost[0] - cost[1]:.2f} ms")


def bench(args: argparse.Namespace) -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        workspace = link_model_cache(Path(tmp))
        encoder = load_encoder(args.model, cache_dir=workspace / "cache")  # the servers read what it converts
        synthetic_index(workspace, encoder, args.vectors, args.partitions)
        encode_ms = text_encoder_ms(encoder)
        rows, memory = load_rows(workspace, args) if args.clients else ([], {})
        slow, cost = slow_rows(workspace, args) if args.slow else ([], None)
    print(f"\nmodel {args.model}, {encoder.backend} {encoder.precision}; {args.vectors:,} vectors of dim "
          f"{encoder.dim} in {args.partitions} partitions; "
          f"{args.seconds:.0f} s per route and client count; text encoder alone: {encode_ms:.1f} ms a query "
          f"(target for /search p50: <= {1.5 * encode_ms + 5:.1f} ms)")
    if rows:
        print_load(rows, memory)
    if slow:
        print_slow(slow, cost, args)
    failed = sum(row[-1] for row in rows)
    if args.smoke and failed:
        raise SystemExit(f"smoke: {failed} /search or /classify requests did not answer 200")


def main(argv: list[str] | None = None) -> None:
    run("api_load", make_parser(), bench, argv)


if __name__ == "__main__":
    main()
