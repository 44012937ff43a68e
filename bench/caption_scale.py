#!/usr/bin/env python3
"""Caption scoring at scale: rows/s and peak memory of score_captions.py at 10k, 100k and 1M rows.

Generated pairs shaped like COCO: five captions per image (--captions-per-image), every caption a
distinct text up to --max-distinct-captions (past that, caption texts repeat across images, so that the
text encoder does not dominate the largest size). Up to --files-up-to rows the images are generated
96x96 JPEGs, decoded in the DataLoader workers and encoded like any run; above that, the image vectors
come from a generated clip-retrieval embeddings folder (--image-embeddings; random unit vectors: the
arithmetic and memory of a real run, meaningless scores). Each size runs in a process of its own, so
that its peak memory is its own. A second table gives the cost of each phase per item, and the time a
fully distinct set of that size would take from those costs.

    .venv/bin/python -m bench.caption_scale [--rows 10000 100000 1000000] [--model demo]

--smoke: 100 rows from JPEG files and 300 from an embeddings folder, 1 decode worker.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from bench import SmokeParser
from lib.cli import run
from lib.data.synthetic import COLOURS, SHAPES, describe, draw_scene, random_scene
from lib.settings import REPO_ROOT

PART_ROWS = 100_000  # vectors per img_emb_N.npy in the generated embeddings folder
SMOKE = dict(rows=[100, 300], files_up_to=100, num_workers=1)


def make_parser() -> argparse.ArgumentParser:
    parser = SmokeParser(__doc__, SMOKE)
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--captions-per-image", type=int, default=5)
    parser.add_argument("--max-distinct-captions", type=int, default=100_000)
    parser.add_argument("--files-up-to", type=int, default=100_000, help="larger sizes use an embeddings folder")
    parser.add_argument("--model", default="demo")
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--suggest", type=int, default=0)
    return parser


def make_pairs(folder: Path, rows: int, per_image: int, distinct: int, files: bool, dim: int) -> list[str]:
    """Write images (or an embeddings folder) and pairs.csv; returns the extra flags score_captions needs."""
    rng = random.Random(rows)
    images = -(-rows // per_image)
    scenes = [random_scene(rng.choice(list(COLOURS)), rng.choice(SHAPES), rng) for _ in range(images)]
    names = [f"images/{i // 1000:04d}/{i:07d}.jpg" for i in range(images)]
    if files:
        for name, scene in zip(names, scenes, strict=True):
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            draw_scene(scene, rng).save(folder / name, quality=90)
    captions = [f"{describe(scenes[i // per_image], rng)}, photo {i}" for i in range(min(rows, distinct))]
    with open(folder / "pairs.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "caption"])
        writer.writerows([names[row // per_image], captions[row % len(captions)]] for row in range(rows))
    if files:
        return []
    embeddings = folder / "embeddings"
    for sub in ("img_emb", "metadata"):
        (embeddings / sub).mkdir(parents=True)
    generator = np.random.default_rng(rows)
    for part, start in enumerate(range(0, images, PART_ROWS)):
        chunk = names[start:start + PART_ROWS]
        vectors = generator.normal(size=(len(chunk), dim)).astype(np.float32)
        np.save(embeddings / "img_emb" / f"img_emb_{part}.npy", (vectors / np.linalg.norm(vectors, axis=1,
                                                                                         keepdims=True)).astype(np.float16))
        pq.write_table(pa.table({"image_path": chunk}), embeddings / "metadata" / f"metadata_{part}.parquet")
    return ["--image-embeddings", str(embeddings)]


def score(folder: Path, flags: list[str], args: argparse.Namespace) -> dict:
    command = [sys.executable, str(REPO_ROOT / "score_captions.py"), str(folder / "pairs.csv"), "--images-dir",
               str(folder), "--out-dir", str(folder / "out"), "--no-progress", "--model", args.model,
               "--num-workers", str(args.num_workers), "--suggest", str(args.suggest), *flags]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if result.returncode != 0:
        raise RuntimeError(f"score_captions failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def model_dim(spec: str) -> int:
    from lib.model.loading import open_checkpoint

    return int(open_checkpoint(spec).config.projection_dim)


def print_tables(results: list[tuple[int, str, dict]], per_image: int) -> None:
    print("| rows | distinct images | distinct captions | images from | wall s | rows/s | peak MiB "
          "| decode worker peak MiB | read s | images s | captions s | search s | write s | figures s |")
    print("|" + "---|" * 14)
    for rows, source, s in results:
        t = s["seconds"]
        print(f"| {rows:,} | {s['distinct_images']:,} | {s['distinct_captions']:,} | {source} | {s['wall_time_s']:.1f} "
              f"| {rows / s['wall_time_s']:,.0f} | {s['peak_memory_mib']:,.0f} | "
              f"{s['workers_peak_memory_mib']:,.0f} | {t['read rows']:.1f} | {t['images']:.1f} | {t['captions']:.1f} | "
              f"{t['search']:.1f} | {t['write']:.1f} | "
              f"{t['figures and report']:.1f} |")
    print("\nCost per item, and a fully distinct set of this size (captions all distinct, "
          f"{per_image} per image) projected from it:")
    print("| rows | ms per caption | ms per image | µs per row (read + write) | ns per image x caption (search) "
          "| projected s, all captions distinct |")
    print("|---|---|---|---|---|---|")
    for rows, _, s in results:
        t, images, captions = s["seconds"], s["distinct_images"], s["distinct_captions"]
        per_caption, per_image_s = t["captions"] / captions, t["images"] / images
        per_row = (t["read rows"] + t["write"]) / rows
        per_product = t["search"] / (images * captions)
        projected = rows * per_caption + images * per_image_s + rows * per_row + images * rows * per_product
        print(f"| {rows:,} | {per_caption * 1e3:.2f} | {per_image_s * 1e3:.2f} | {per_row * 1e6:.1f} | "
              f"{per_product * 1e9:.3f} | {projected:,.0f} |")


def bench(args: argparse.Namespace) -> None:
    dim = model_dim(args.model)
    results = []
    for rows in args.rows:
        files = rows <= args.files_up_to
        with tempfile.TemporaryDirectory(prefix="bench-captions-") as tmp:
            flags = make_pairs(Path(tmp), rows, args.captions_per_image, args.max_distinct_captions, files, dim)
            results.append((rows, "JPEG files" if files else "embeddings folder", score(Path(tmp), flags, args)))
        print(f"{rows:,} rows done: {json.dumps(results[-1][2])}", file=sys.stderr, flush=True)
    print(f"\nmodel {args.model} ({dim}-d), {torch.get_num_threads()} torch threads, "
          f"{args.num_workers} decode workers, --suggest {args.suggest}, {os.cpu_count()} CPUs")
    print_tables(results, args.captions_per_image)


def main(argv: list[str] | None = None) -> None:
    run("caption_scale", make_parser(), bench, argv)


if __name__ == "__main__":
    main()
