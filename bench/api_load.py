#!/usr/bin/env python3
"""Load on the live server (scripts/api.sh on loopback) over an index of 100,000 vectors.

N client threads send /search and /classify for a bounded time; the table gives requests/s,
p50/p99 latency, errors, and the memory of the server processes (PSS counts a shared page once,
split between its users). Run once with 1 worker and once with N to compare memory.
Targets (issue 4): /search p50 <= 1.5 x the text encoder's own time + 5 ms; errors 0;
memory of N workers well below N x one worker's.

    .venv/bin/python -m bench.api_load [--vectors 100000] [--clients 1 4] [--seconds 15] [--workers 2]
                                       [--model demo | random:ViT-B/32]
"""
from __future__ import annotations

import argparse
import io
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

import numpy as np
import requests
from PIL import Image

from lib.build.text_index import build_text_index
from lib.cli import new_parser, run
from lib.data.synthetic import class_names
from lib.data.vocabulary import VocabStats
from lib.model.loading import load_encoder
from lib.store.catalog import Catalog, DatasetRecord, ImageRecord
from lib.store.index_files import commit_partition
from lib.store.vocab_index import VocabEntry

REPO = Path(__file__).resolve().parent.parent


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


def start_server(workspace: Path, model: str, workers: int, threads: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "CLIPSEARCH_WORKSPACE": str(workspace), "CLIPSEARCH_MODEL": model}
    process = subprocess.Popen([str(REPO / "scripts" / "api.sh"), "--port", str(port), "--workers", str(workers),
                                "--threads", str(threads)], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            if requests.get(f"{base}/health", timeout=2).ok:
                return process, base
        except requests.ConnectionError:
            time.sleep(0.5)
    os.killpg(process.pid, signal.SIGTERM)
    raise SystemExit("the server did not start")


def memory_mb(master: int) -> tuple[float, float]:
    """Summed RSS and PSS of the master and its workers, in MiB."""
    pids = [master] + [int(p) for p in subprocess.run(["ps", "-o", "pid=", "--ppid", str(master)],
                                                      capture_output=True, text=True).stdout.split()]
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
    parser = new_parser(__doc__)
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=100)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4],
                        help="client counts: 1 gives the latency of one request, more the throughput under load")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default="demo", help="model spec the server loads (random:ViT-B/32 for full size)")
    return parser


def bench(args: argparse.Namespace) -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        workspace = Path(tmp)
        encoder = load_encoder(args.model, cache_dir=workspace / "cache")  # the servers read what it converts
        synthetic_index(workspace, encoder, args.vectors, args.partitions)
        encode_ms = text_encoder_ms(encoder)
        rows, memory = [], {}
        for workers in sorted({1, args.workers}):
            process, base = start_server(workspace, args.model, workers, args.threads)
            try:
                for route in ("/search", "/classify"):
                    load(base, route, 1, 2.0)  # warm-up: first touches of the mapped indexes, lazy imports
                for clients in args.clients:
                    for route in ("/search", "/classify"):
                        latencies, errors = load(base, route, clients, args.seconds)
                        rows.append((workers, clients, route, len(latencies) / args.seconds,
                                     percentile(latencies, 50), percentile(latencies, 99), errors))
                memory[workers] = memory_mb(process.pid)
            finally:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=30)
    print(f"\nmodel {args.model}, {encoder.backend} {encoder.precision}; {args.vectors:,} vectors of dim "
          f"{encoder.dim} in {args.partitions} partitions; "
          f"{args.seconds:.0f} s per route and client count; text encoder alone: {encode_ms:.1f} ms a query "
          f"(target for /search p50: <= {1.5 * encode_ms + 5:.1f} ms)")
    print("| workers | clients | route | req/s | p50 ms | p99 ms | errors |")
    print("|---|---|---|---|---|---|---|")
    for workers, clients, route, rate, p50, p99, errors in rows:
        print(f"| {workers} | {clients} | {route} | {rate:.1f} | {p50:.1f} | {p99:.1f} | {errors} |")
    print("\n| workers | RSS MiB (sum) | PSS MiB (sum) | PSS / (workers x 1-worker PSS) |")
    print("|---|---|---|---|")
    single = memory[1][1]
    for workers, (rss, pss) in sorted(memory.items()):
        print(f"| {workers} | {rss:.0f} | {pss:.0f} | {pss / (workers * single):.0%} |")


def main(argv: list[str] | None = None) -> None:
    run("api_load", make_parser(), bench, argv)


if __name__ == "__main__":
    main()
