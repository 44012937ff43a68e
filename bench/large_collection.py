#!/usr/bin/env python3
"""Large collections: build, recall and live latency from 100k to millions of 512-d vectors (issue 12).

Per size: a Gaussian mixture of 2,000 clusters (lib/data/synthetic_vectors.py) written as a clip-retrieval
embeddings folder (float16, 200 classes in a `class` column), imported with
`build_image_index.py NAME --from-embeddings DIR --class-column class --model random:ViT-B/32`, then:
build time, peak RSS and peak anonymous memory of the build process (and its anonymous memory once the
model is loaded, which the import does for the model's identity), index bytes on disk, recall@10 of
held-out queries against exact search (all partitions, one partition, ten), in-process search time per
query (one thread), and /search and /similar p50/p99 through the live server (scripts/api.sh, 2 workers,
one client) with its memory. Targets: at 1M /search p50 <= 15 ms with recall@10 >= 0.95; p50 at 1M
<= 2 x p50 at 100k; 10M served within 24 GB.

    .venv/bin/python -m bench.large_collection [--sizes 100000 1000000] [--work /tmp/large] [--seconds 20]
                                               [--memory-budget auto] [--keep] [--resume] [--model SPEC]

--smoke: 3,000 vectors of the demo model (128-d) in 20 classes, IVF from 1,000 vectors, 1 s per route.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import faiss
import numpy as np
import requests
import torch

from bench import SmokeParser, link_model_cache
from bench.api_load import REPO, gunicorn_processes, memory_mb, percentile, start_server, stop_server, text_encoder_ms
from lib.cli import run
from lib.cpu import cpu_flags
from lib.data.synthetic_vectors import Mixture, write_mixture
from lib.ingest.ivf_tune import exact_top
from lib.model.loading import load_encoder
from lib.serve.index_set import load_index_set
from lib.settings import load_settings

DATASET = "large"
QUERIES = 1000
TIMED = 300
SMOKE = dict(sizes=[3000], work=None, queries=50, seconds=1.0, model="demo", ivf_min_vectors=1000, classes=20,
             clusters=100)


def build(folder: Path, workspace: Path, args: argparse.Namespace, name: str = DATASET) -> dict:
    """Import the folder in a child process, sampling its memory every 0.1 s; its anonymous memory when the
    model has loaded (the import loads it for its identity) is the part of the peak that is not the build's."""
    command = [sys.executable, "build_image_index.py", name, "--from-embeddings", str(folder), "--class-column",
               "class", "--model", args.model, "--workspace", str(workspace), "--memory-budget", args.memory_budget,
               "--no-progress"] + (["--ivf-min-vectors", str(args.ivf_min_vectors)] if args.ivf_min_vectors else [])
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    status, lines, memory = Path(f"/proc/{process.pid}/status"), [], {"anon": 0, "rss": 0, "model": 0}

    def sample() -> int:
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines())
        except (OSError, ValueError):
            return 0
        if "VmHWM" not in fields:  # the process has exited (a zombie has no memory lines)
            return 0
        memory["rss"] = max(memory["rss"], int(fields["VmHWM"].split()[0]))
        memory["anon"] = max(memory["anon"], int(fields["RssAnon"].split()[0]))
        return int(fields["RssAnon"].split()[0])

    def read() -> None:
        for line in process.stdout:
            lines.append(line)
            if "loaded model" in line:
                memory["model"] = sample()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    while process.poll() is None:
        sample()
        time.sleep(0.1)
    reader.join()
    if process.returncode:
        raise SystemExit("the build failed:\n" + "".join(lines)[-3000:])
    print(next((line.strip() for line in lines if "images imported" in line), ""))
    return {"build_s": time.perf_counter() - started, "peak_rss_mb": memory["rss"] / 1024,
            "peak_anon_mb": memory["anon"] / 1024, "model_anon_mb": memory["model"] / 1024}


def index_bytes(workspace: Path) -> dict:
    files = list((workspace / "indexes").glob(f"image_{DATASET}_*"))
    total = lambda suffix: sum(f.stat().st_size for f in files if f.name.endswith(suffix))  # noqa: E731
    return {"ivf_mb": total(".ivf") / 2**20, "exact_mb": total(".index") / 2**20, "quantizer_mb": total(".quantizer")
            / 2**20}


def single(search, queries: np.ndarray) -> float:
    """Median ms of one-query searches."""
    times = []
    for query in queries[:TIMED]:
        started = time.perf_counter()
        search(query[None])
        times.append((time.perf_counter() - started) * 1000)
    return float(np.median(times))


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[f >= 0]) & set(t[t >= 0])) / max((t >= 0).sum(), 1)
                          for f, t in zip(found, truth, strict=True)]))


def in_process(workspace: Path, mixture: Mixture, model, count: int = QUERIES) -> dict:
    """Recall@10 against exact and one-thread search times, with the index set the server would load."""
    faiss.omp_set_num_threads(1)
    started = time.perf_counter()
    index_set = load_index_set(workspace / "indexes", workspace / "indexes_text", model)
    dataset = index_set.datasets[DATASET]
    loaded = time.perf_counter() - started
    queries, _ = mixture.sample(count, np.random.default_rng(12345))
    rng = np.random.default_rng(1)
    names = sorted(dataset.partitions)
    one, ten = [names[rng.integers(len(names))]], list(rng.choice(names, 10, replace=False))
    out = {"load_s": loaded, "search": dataset.ivf}
    for label, chosen in (("all", None), ("1 partition", one), ("10 partitions", ten)):
        faiss.omp_set_num_threads(2)
        truth = exact_top(dataset.index.exact, queries, 10, chosen)
        faiss.omp_set_num_threads(1)
        out[f"recall {label}"] = recall(dataset.search(queries, 10, chosen)[1], truth)
        out[f"ms {label}"] = single(lambda q, chosen=chosen: dataset.search(q, 10, chosen), queries)
    out["ms exact"] = single(lambda q: dataset.search(q, 10, exact=True), queries[:30])
    return out


def live(workspace: Path, model: str, seconds: float, count: int, **settings: str) -> dict:
    """p50/p99 of /search and /similar (by image id) through the live server (with any other settings given),
    one client. Every query text is new, so that neither the text cache nor the ranked pages answer it."""
    process, base = start_server(workspace, model, workers=2, threads=2, **settings)
    words = ["red", "a dog on a beach", "two circles", "night city", "stars", "a striped cat", "green field"]
    try:
        out = {}
        for route in ("/search", "/similar"):
            times = []
            deadline = time.monotonic() + seconds + min(2.0, seconds)  # and a warm-up
            session, rng = requests.Session(), random.Random(0)
            while time.monotonic() < deadline:
                body = {"query": f"{rng.choice(words)} {len(times)}", "k": 10} if route == "/search" else \
                    {"image_id": rng.randint(1, count), "k": 10}
                started = time.perf_counter()
                response = session.post(base + route, json=body, timeout=60)
                assert response.ok, response.text
                times.append((time.perf_counter() - started) * 1000)
            warm = [t for t in times[len(times) // 10:]]
            out[route] = (percentile(warm, 50), percentile(warm, 99), len(warm))
        out["memory"] = memory_mb(gunicorn_processes(process.pid))
        return out
    finally:
        stop_server(process)


def run_size(count: int, args: argparse.Namespace, model) -> dict:
    root = args.work / f"n{count}"
    mixture = Mixture(dim=model.dim, clusters=args.clusters, seed=0)
    started = time.perf_counter()
    if not (args.resume and (root / "embeddings" / "metadata").is_dir()):
        shutil.rmtree(root, ignore_errors=True)
        write_mixture(root / "embeddings", count, mixture, classes=args.classes)
    row = {"count": count, "generate_s": time.perf_counter() - started}
    workspace = link_model_cache(root / "workspace")  # the build's time and memory are without a conversion
    row.update(build(root / "embeddings", workspace, args))
    row.update(index_bytes(workspace))
    row.update(in_process(workspace, mixture, model.identity, args.queries))
    row.update(live(workspace, args.model, args.seconds, count))
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    print_rows([row])
    return row


def print_rows(rows: list[dict]) -> None:
    print("\n| vectors | storage | nlist | nprobe (filtered) | re-rank | build s | peak RSS MB | peak anon MB "
          "(model) | "
          "IVF MB | exact MB | load s | recall@10 all / 1 part / 10 parts | in-process ms all / 1 / 10 / exact | "
          "/search p50 / p99 ms | /similar p50 / p99 ms | server RSS / PSS MB |")
    print("|" + "---|" * 16)
    for r in rows:
        ivf = r["search"]
        how = (ivf.storage, ivf.nlist, f"{ivf.nprobe} ({ivf.nprobe_filtered})", ivf.rerank) if ivf else \
            ("exact", "-", "-", "-")
        print(f"| {r['count']:,} | {how[0]} | {how[1]} | {how[2]} | {how[3]} | {r['build_s']:.0f} | "
              f"{r['peak_rss_mb']:.0f} | {r['peak_anon_mb']:.0f} ({r['model_anon_mb']:.0f}) | {r['ivf_mb']:.0f} | "
              f"{r['exact_mb']:.0f} | "
              f"{r['load_s']:.1f} | {r['recall all']:.3f} / {r['recall 1 partition']:.3f} / "
              f"{r['recall 10 partitions']:.3f} | {r['ms all']:.2f} / {r['ms 1 partition']:.2f} / "
              f"{r['ms 10 partitions']:.2f} / {r['ms exact']:.0f} | {r['/search'][0]:.1f} / {r['/search'][1]:.1f} | "
              f"{r['/similar'][0]:.1f} / {r['/similar'][1]:.1f} | {r['memory'][0]:.0f} / {r['memory'][1]:.0f} |")


def add_collection_arguments(parser: argparse.ArgumentParser, work: str) -> None:
    """The flags of a benchmark over generated collections of each size (this one and bench.postgres_store)."""
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--work", type=Path, default=Path(work),
                        help="scratch folder (several GB a million vectors; with --smoke a temporary one)")
    parser.add_argument("--queries", type=int, default=QUERIES, help="held-out queries recall is measured on")
    parser.add_argument("--seconds", type=float, default=20.0, help="per route (and store), after a 2 s warm-up")
    parser.add_argument("--memory-budget", default="auto")
    parser.add_argument("--model", default="random:ViT-B/32", help="its dimension is the vectors'")
    parser.add_argument("--ivf-min-vectors", type=int, help="the build's ivf_min_vectors (default: the setting's)")
    parser.add_argument("--classes", type=int, default=200, help="classes, and so partitions, of the dataset")
    parser.add_argument("--clusters", type=int, default=2000, help="clusters of the Gaussian mixture")


def make_parser() -> argparse.ArgumentParser:
    parser = SmokeParser(__doc__, SMOKE)
    add_collection_arguments(parser, "/tmp/clipsearch-large")
    parser.add_argument("--keep", action="store_true", help="keep the generated folders and indexes (else removed)")
    parser.add_argument("--resume", action="store_true",
                        help="reuse a size's kept folder and finish its build (the build time and peak memory are "
                             "then those of the rest of the build)")
    return parser


def bench(args: argparse.Namespace) -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    model = load_encoder(args.model, cache_dir=load_settings().cache_dir)
    flags = {"avx512f", "avx512_bf16", "amx_bf16"} & cpu_flags()
    torch.set_num_threads(1)  # as in each of the server's 2 workers (api/gunicorn_conf.py)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, CPU flags {sorted(flags)}, "
          f"faiss {faiss.__version__}; model {args.model} ({model.backend} {model.precision}), text encoder alone "
          f"{text_encoder_ms(model):.1f} ms a query on one thread")
    scratch = tempfile.TemporaryDirectory(prefix="bench-large-") if args.work is None else \
        contextlib.nullcontext(args.work)
    with scratch as work:
        args.work = Path(work)
        rows = [run_size(count, args, model) for count in args.sizes]
    print("\nAll sizes:")
    print_rows(rows)
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        print(f"\n/search p50 at {last['count']:,} / at {first['count']:,}: "
              f"{last['/search'][0] / first['/search'][0]:.2f}x (target <= 2)")


def main(argv: list[str] | None = None) -> None:
    run("large_collection", make_parser(), bench, argv)


if __name__ == "__main__":
    main()
