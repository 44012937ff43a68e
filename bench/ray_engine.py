#!/usr/bin/env python3
"""The Ray engine on this one machine against the local engine, and the rate at which the driver commits.

In one run on this machine:
  engines  images/s of build_image_index over the same generated JPEGs with --engine local and with
           --engine ray (a local Ray instance: decode tasks and one encoder actor), the best of
           --rounds builds each in alternating order; for Ray also the start-up (until the first batch
           is back) and the rate after it
  commit   vectors/s the driver takes in as the single writer: the builder fed by an engine that hands
           back ready vectors (scan, plan, commit_partition), and commit_partition's own share
Target (issue 13): Ray >= 0.8x the local engine's images/s.

    .venv/bin/python -m bench.ray_engine [--images 1008] [--image-size 480] [--models demo random:ViT-B/32]

--smoke: the demo model only, 36 JPEGs of 64x64, one build per engine, 2,000 vectors of 64 d to commit.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

import lib.ingest.image_index as image_index
from bench import SmokeParser, link_model_cache
from lib.cli import run
from lib.data.datasets import ImageFile
from lib.data.synthetic import class_names, generate_dataset
from lib.ingest.image_index import ImageIndexBuilder
from lib.ingest.local_engine import make_engine
from lib.ingest.report import BuildReport
from lib.model.decode import EncodedFile
from lib.model.encoder import ClipEncoder
from lib.model.loading import cpu_has_bf16, load_encoder
from lib.settings import Settings, load_settings

SMOKE = dict(images=36, image_size=64, models=["demo"], batch_size=8, rounds=1, num_workers=1, vectors=2000,
             partition_size=500, dim=64)


class TimedEngine:
    """An engine that notes when its first batch came back."""

    def __init__(self, engine: image_index.Engine) -> None:
        self.engine, self.first_batch_s = engine, 0.0

    def encode(self, root: Path, files: list[ImageFile], regions: bool = False) -> Iterator[list[EncodedFile]]:
        started = time.perf_counter()
        for batch in self.engine.encode(root, files, regions):
            self.first_batch_s = self.first_batch_s or time.perf_counter() - started
            yield batch


class ReadyVectors:
    """An engine with nothing to compute: random unit vectors, so that only the driver's work is timed."""

    def __init__(self, dim: int, batch_size: int) -> None:
        self.dim, self.batch_size = dim, batch_size
        self.streaming_s = 0.0  # from the first batch to the last commit: the driver's work per vector

    def encode(self, root: Path, files: list[ImageFile], regions: bool = False) -> Iterator[list[EncodedFile]]:
        rng = np.random.default_rng(0)
        started = time.perf_counter()
        for start in range(0, len(files), self.batch_size):
            vectors = rng.standard_normal((min(self.batch_size, len(files) - start), self.dim), dtype=np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            yield [EncodedFile(start + k, size=(640, 480), sha256="0" * 64, vector=vector)
                   for k, vector in enumerate(vectors)]
        self.streaming_s = time.perf_counter() - started


def settings_in(workspace: Path, root: Path, **overrides) -> Settings:
    """Settings for a build in `workspace`, whose model cache is the run's (so Ray's actors convert nothing)."""
    workspace.mkdir(parents=True)
    (workspace / "cache").symlink_to(workspace.parent / "cache", target_is_directory=True)
    return load_settings(environ={}, overrides=dict(workspace=str(workspace), dataset_name="bench",
                                                    dataset_path=str(root), **overrides))


def timed_build(settings: Settings, encoder: ClipEncoder) -> tuple[BuildReport, float]:
    engine = TimedEngine(make_engine(settings, encoder))
    report = ImageIndexBuilder(settings, encoder, progress=False, engine=engine).run()
    return report, engine.first_batch_s


def compare_engines(args: argparse.Namespace, tmp: Path) -> list[tuple]:
    root = tmp / "photos"
    per_class = -(-args.images // len(class_names()))
    generate_dataset(root, seed=1, per_class=per_class, image_size=args.image_size)
    for path in root.rglob("*.JPEG"):
        path.read_bytes()  # both engines read from the page cache
    rows = []
    count = per_class * len(class_names())
    for spec in args.models:
        encoder = load_encoder(spec, cache_dir=tmp / "cache")  # converted once: every build's workspace links here
        best: dict[str, tuple[float, float, float]] = {}
        for round_ in range(args.rounds):  # alternate the order; keep each engine's best round
            for engine in ("local", "ray") if round_ % 2 == 0 else ("ray", "local"):
                settings = settings_in(tmp / f"{engine}-{len(rows)}-{round_}", root, engine=engine, model=spec,
                                       batch_size=args.batch_size, num_workers=args.num_workers)
                report, first = timed_build(settings, encoder)
                assert report.encoded == count and not report.skipped, "the build failed"
                best[engine] = max(best.get(engine, (0.0, 0.0, 0.0)), (count / report.seconds, first, report.seconds))
        ray_rate, first, seconds = best["ray"]
        after_start = (count - args.batch_size) / max(1e-9, seconds - first)
        rows.append((spec, f"{encoder.backend} {encoder.precision}", best["local"][0], ray_rate,
                     ray_rate / best["local"][0], first, after_start))
    return rows


def commit_rate(args: argparse.Namespace, tmp: Path) -> tuple[float, float, float, int]:
    """Vectors/s of the whole build (scan and plan included), of the driver while vectors stream in, and of
    commit_partition alone, for `args.vectors` vectors."""
    root = tmp / "flat"
    root.mkdir()
    for i in range(args.vectors):
        (root / f"{i:08d}.jpg").touch()
    spent = [0.0]
    real_commit = image_index.commit_partition

    def timed_commit(*a, **k):
        started = time.perf_counter()
        try:
            return real_commit(*a, **k)
        finally:
            spent[0] += time.perf_counter() - started

    encoder = load_encoder("demo", cache_dir=tmp / "cache")  # its identity only; ReadyVectors makes the vectors
    settings = settings_in(tmp / "commit", root, partition_size=args.partition_size, layout="flat")
    engine = ReadyVectors(args.dim, 256)
    builder = ImageIndexBuilder(settings, encoder, progress=False, engine=engine)
    builder.encoder = _with_dim(encoder, args.dim)
    image_index.commit_partition = timed_commit
    try:
        report = builder.run()
    finally:
        image_index.commit_partition = real_commit
    return (report.encoded / report.seconds, report.encoded / engine.streaming_s, report.encoded / spent[0],
            report.partitions_written)


def _with_dim(encoder: ClipEncoder, dim: int) -> ClipEncoder:
    """The demo encoder posing as one of `dim` dimensions (the builder reads only its identity)."""
    from dataclasses import replace

    encoder.identity = replace(encoder.identity, dim=dim)
    return encoder


def make_parser() -> argparse.ArgumentParser:
    parser = SmokeParser(__doc__, SMOKE)
    parser.add_argument("--images", type=int, default=1008, help="JPEGs in the generated dataset")
    parser.add_argument("--image-size", type=int, default=480, help="side of the generated JPEGs (photo-sized)")
    parser.add_argument("--models", nargs="+", default=["demo", "random:ViT-B/32"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2, help="builds per engine and model, in alternating order")
    parser.add_argument("--num-workers", type=int, default=2, help="decode workers of the local engine")
    parser.add_argument("--vectors", type=int, default=100_000, help="vectors for the commit-rate measure")
    parser.add_argument("--partition-size", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=512)
    return parser


def bench(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        link_model_cache(Path(tmp))  # the run's model cache, which every build's workspace links to
        rows = compare_engines(args, Path(tmp))
        whole, streaming, commit, partitions = commit_rate(args, Path(tmp))
    print(f"\n{args.images} JPEGs of {args.image_size}x{args.image_size}, batch {args.batch_size}, best of "
          f"{args.rounds} builds per engine, "
          f"{torch.get_num_threads()} inference threads, AVX512-BF16: {cpu_has_bf16()}, local engine with "
          f"{args.num_workers} decode workers, Ray: a local instance on this machine")
    header = ("model", "backend", "local img/s", "ray img/s", "ray/local", "ray start-up s", "ray img/s after start-up")
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for spec, backend, local, ray, ratio, first, after in rows:
        print(f"| {spec} | {backend} | {local:.1f} | {ray:.1f} | {ratio:.2f} | {first:.1f} | {after:.1f} |")
    print(f"\nDriver as single writer: {args.vectors} vectors of {args.dim} d in {partitions} flat partitions of "
          f"{args.partition_size}")
    print("| whole build vectors/s (scan, plan, commit) | driver vectors/s while they stream in | "
          "commit_partition vectors/s |\n|---|---|---|")
    print(f"| {whole:,.0f} | {streaming:,.0f} | {commit:,.0f} |")


def main(argv: list[str] | None = None) -> None:
    run("ray_engine", make_parser(), bench, argv)


if __name__ == "__main__":
    main()
