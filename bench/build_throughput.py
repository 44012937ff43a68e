#!/usr/bin/env python3
"""How close build_image_index gets to the model's own speed, and how cheap an unchanged re-run is.

For each model, in one run on this machine:
  forward   images/s of the image encoder alone on preprocessed tensors, at its best batch size
  build     images/s of build_image_index end to end (walk, decode, preprocess, encode, write)
  rerun     seconds of a second build over the unchanged dataset
Targets (issue 3): build >= 85 % of forward for ViT-B/32; rerun < 5 % of the first build.

    .venv/bin/python -m bench.build_throughput [--images 2000] [--models demo random:ViT-B/32]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from lib.build.image_index import build_image_index
from lib.cli import new_parser, run
from lib.data.synthetic import class_names, generate_dataset
from lib.model.encoder import ClipEncoder
from lib.model.loading import load_encoder
from lib.settings import load_settings


def forward_limit(encoder: ClipEncoder, batch_sizes: list[int], seconds: float) -> tuple[float, int]:
    """Best images/s of encode_pixels on random preprocessed input, and the batch size that gave it."""
    size = encoder.transform.crop_height
    best = (0.0, batch_sizes[0])
    for batch in batch_sizes:
        pixels = torch.randn(batch, 3, size, size)
        encoder.encode_pixels(pixels)  # warm-up
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            encoder.encode_pixels(pixels)
            done += batch
        best = max(best, (done / (time.perf_counter() - started), batch))
    return best


def make_parser() -> argparse.ArgumentParser:
    parser = new_parser(__doc__)
    parser.add_argument("--images", type=int, default=2016, help="JPEGs in the generated dataset (>= 2000)")
    parser.add_argument("--image-size", type=int, default=256, help="side of the generated JPEGs")
    parser.add_argument("--models", nargs="+", default=["demo", "random:ViT-B/32"])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--seconds", type=float, default=8.0, help="timing window per forward batch size")
    parser.add_argument("--num-workers", type=int, default=2)
    return parser


def bench(args: argparse.Namespace) -> None:
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-build-") as tmp:
        root = Path(tmp) / "data"
        per_class = -(-args.images // len(class_names()))
        generate_dataset(root, seed=1, per_class=per_class, image_size=args.image_size)
        count = per_class * len(class_names())
        for spec in args.models:
            encoder = load_encoder(spec)
            forward, batch = forward_limit(encoder, args.batch_sizes, args.seconds)
            settings = load_settings(environ={}, overrides=dict(
                workspace=str(Path(tmp) / spec.replace("/", "-").replace(":", "-")), dataset_name="bench",
                dataset_path=str(root), batch_size=batch, num_workers=args.num_workers))
            first = build_image_index(settings, encoder, progress=False)
            rerun = build_image_index(settings, encoder, progress=False)
            assert first.encoded == count and rerun.encoded == 0, "the benchmark dataset did not build cleanly"
            build_rate = first.encoded / first.seconds
            rows.append((spec, str(encoder.dtype).replace("torch.", ""), batch, forward, build_rate,
                         first.seconds, rerun.seconds))
    print(f"\n{count} JPEGs of {args.image_size}x{args.image_size}, {torch.get_num_threads()} torch threads, "
          f"{args.num_workers} decode workers")
    header = ("model", "dtype", "batch", "forward img/s", "build img/s", "build/forward", "first build s",
              "re-run s", "re-run/first")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for spec, dtype, batch, forward, build_rate, first_s, rerun_s in rows:
        print(f"| {spec} | {dtype} | {batch} | {forward:.1f} | {build_rate:.1f} | {build_rate / forward:.0%} | "
              f"{first_s:.1f} | {rerun_s:.2f} | {rerun_s / first_s:.1%} |")


def main(argv: list[str] | None = None) -> None:
    run("build_throughput", make_parser(), bench, argv)


if __name__ == "__main__":
    main()
