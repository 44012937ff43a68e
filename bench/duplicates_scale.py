#!/usr/bin/env python3
"""Whole-dataset duplicate grouping at scale: time and peak memory at 10,000 to 100,000 vectors.

Synthetic clustered vectors (a Gaussian mixture: distinct members of a cluster at cosine ~0.8) with
planted copies (2 % near, at cosine ~0.99; 1 % byte-identical, same SHA-256 in the catalog), committed
through lib/store's commit_partition as a build would, then grouped by lib/serve/duplicate_finder exactly
as find_duplicates.py and /duplicates do: every vector's nearest neighbours through the dataset's own
index, a batch at a time. The table compares, in one run, the peak memory added by the grouping with
the vectors' own size and with the N x N float32 matrix an all-pairs comparison would need.

    .venv/bin/python -m bench.duplicates_scale [--vectors 10000 100000] [--dim 512] [--index-type flat]

--smoke: 1,000 and 2,000 vectors of 64 dimensions in 4 partitions.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import SmokeParser
from lib.cli import run
from lib.serve.duplicate_finder import group_dataset
from lib.serve.index_set import load_dataset
from lib.store.catalog import Catalog, DatasetRecord, ImageRecord
from lib.store.dataset_figures import DuplicateThresholds
from lib.store.identity import ModelIdentity
from lib.store.index_files import commit_partition

THRESHOLDS = DuplicateThresholds(near=0.95, similar=0.9)
SMOKE = dict(vectors=[1000, 2000], dim=64, partitions=4)


def clustered(count: int, dim: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors in clusters of ~50 with 2 % near copies and 1 % exact copies; and each one's content id."""
    centres = rng.normal(size=(max(1, count // 50), dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    spread = np.sqrt(0.25 / dim)  # distinct members of one cluster at cosine ~0.8
    vectors = centres[rng.integers(0, len(centres), count)] + rng.normal(scale=spread, size=(count, dim))
    content = np.arange(count)
    picked = rng.permutation(count)[: 3 * (count // 100) * 2].reshape(2, -1)  # (originals, copies)
    near, exact = picked[:, : 2 * (count // 100)], picked[:, 2 * (count // 100):]
    vectors[near[1]] = vectors[near[0]] + rng.normal(scale=spread / 5, size=(near.shape[1], dim))
    vectors[exact[1]], content[exact[1]] = vectors[exact[0]], content[exact[0]]
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    return vectors, content


def write_dataset(folder: Path, count: int, dim: int, partitions: int, index_type: str) -> None:
    rng = np.random.default_rng(0)
    vectors, content = clustered(count, dim, rng)
    catalog = Catalog.in_folder(folder)
    with catalog.transaction() as db:
        catalog.put_dataset(db, DatasetRecord("scale", folder, "flat", index_type,
                                              ModelIdentity("bench", "0" * 64, dim)))
    for part, rows in enumerate(np.array_split(np.arange(count), partitions)):
        name = f"part{part:05d}"
        ids = rows + 1
        records = [ImageRecord(int(i), "scale", name, f"{name}/{i}.jpg", "", 640, 480, 100_000, int(i),
                               f"{content[i - 1]:064d}") for i in ids]
        commit_partition(catalog, folder, "scale", name, ids, vectors[rows], added=records, index_type=index_type)
    catalog.close()


def memory_kib() -> tuple[int, int]:
    """(current RSS, peak RSS) of this process, in KiB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: the peak RSS starts again from the current RSS
    except OSError:
        pass


def measure(folder: Path, count: int) -> tuple[float, float, float, int, int]:
    """(load s, grouping s, peak RSS added MiB, groups, pairs found) for the dataset in `folder`."""
    started = time.perf_counter()
    dataset = load_dataset(folder, "scale")
    loaded = time.perf_counter()
    catalog = Catalog.in_folder(folder, readonly=True)
    baseline, _ = memory_kib()
    reset_peak()
    report = group_dataset(dataset, catalog, THRESHOLDS)
    grouped = time.perf_counter()
    _, peak = memory_kib()
    catalog.close()
    members = sum(len(g.members) for g in report.groups)
    return loaded - started, grouped - loaded, (peak - baseline) / 1024, len(report.groups), members


def make_parser() -> argparse.ArgumentParser:
    parser = SmokeParser(__doc__, SMOKE)
    parser.add_argument("--vectors", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--dim", type=int, default=512, help="512 is ViT-B/32's embedding size")
    parser.add_argument("--partitions", type=int, default=100)
    parser.add_argument("--index-type", default="flat", choices=("flat", "hnsw"))
    return parser


def bench(args: argparse.Namespace) -> None:
    import faiss

    print(f"\nfaiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads; dim {args.dim}, "
          f"{args.partitions} partitions ({args.index_type}); "
          f"near >= {THRESHOLDS.near}, similar >= {THRESHOLDS.similar}")
    print("| vectors | load s | grouping s | vs smallest | groups | images in groups | peak RSS added MiB "
          "| vectors MiB | N x N float32 MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    first = None
    for count in args.vectors:
        with tempfile.TemporaryDirectory(prefix="bench-dups-") as tmp:
            write_dataset(Path(tmp), count, args.dim, args.partitions, args.index_type)
            load_s, group_s, peak_mib, groups, members = measure(Path(tmp), count)
        first = first or group_s
        print(f"| {count:,} | {load_s:.2f} | {group_s:.1f} | {group_s / first:.1f}x | {groups:,} | {members:,} | "
              f"{peak_mib:.0f} | {count * args.dim * 4 / 2**20:.0f} | {count * count * 4 / 2**20:,.0f} |")


def main(argv: list[str] | None = None) -> None:
    run("duplicates_scale", make_parser(), bench, argv)


if __name__ == "__main__":
    main()
