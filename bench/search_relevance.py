#!/usr/bin/env python3
"""What the relevance cut-off keeps, and whether hybrid search beats CLIP alone, against class truth.

The demo data (lib/data/synthetic: 36 colour+shape classes, --per-class images each, with captions.csv)
is built into a scratch workspace with the model, then searched through lib/serve (as /search does) with
48 queries: each colour+shape class ("red circle": relevant = that class), each colour ("red": the 6
classes of that colour) and each shape ("circle": the 6 classes of that shape).

- Cut-off: precision and recall of what `cutoff: "auto"` keeps, per kind of query, beside flat
  `min_score` thresholds (one number for every query: what PR #21537 of Immich rejected).
- Modes: precision@10 and R-precision of clip, text (names and captions, FTS5) and hybrid (rank fusion).

    .venv/bin/python -m bench.search_relevance [--per-class 50] [--seed 0] [--model demo]

--smoke: 4 images per class.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import SmokeParser, link_model_cache
from lib.cli import run
from lib.data.synthetic import COLOURS, SHAPES, generate_dataset
from lib.ingest.image_index import build_image_index
from lib.model.loading import load_encoder
from lib.serve.index_set import LiveIndexSet
from lib.serve.paged_search import SearchRequest
from lib.serve.query_terms import parse_query
from lib.serve.search import SearchService
from lib.settings import load_settings

SMOKE = dict(per_class=4)
FLAT_SCORES = (0.2, 0.3, 0.4, 0.5)
KINDS = ("colour+shape", "colour", "shape")


def queries() -> list[tuple[str, str, set[str]]]:
    """(kind, query, relevant class names) for every class, colour and shape."""
    pairs = [("colour+shape", f"{c} {s}", {f"{c} {s}"}) for c in COLOURS for s in SHAPES]
    colours = [("colour", c, {f"{c} {s}" for s in SHAPES}) for c in COLOURS]
    shapes = [("shape", s, {f"{c} {s}" for c in COLOURS}) for s in SHAPES]
    return pairs + colours + shapes


def built(root: Path, workspace: Path, args: argparse.Namespace) -> tuple[SearchService, dict[str, int], float]:
    generate_dataset(root, seed=args.seed, per_class=args.per_class)
    settings = load_settings(environ={}, overrides=dict(workspace=str(workspace), dataset_name="demo",
                                                        dataset_path=str(root), model=args.model, num_workers=0))
    encoder = load_encoder(args.model, cache_dir=link_model_cache(workspace) / "cache")
    started = time.perf_counter()
    build_image_index(settings, encoder, progress=False)
    seconds = time.perf_counter() - started
    service = SearchService(encoder, LiveIndexSet(settings.indexes_dir, settings.indexes_text_dir, encoder.identity))
    dataset = service.indexes.current().datasets["demo"]
    sizes: dict[str, int] = {}
    for partition in dataset.partitions.values():
        sizes[partition.class_name] = sizes.get(partition.class_name, 0) + partition.record.count
    return service, sizes, seconds


def kept(service: SearchService, query: str, **fields) -> list:
    """Every result of a query (one page as deep as the dataset)."""
    return service.search(SearchRequest(parse_query(query), k=100_000, dataset="demo", **fields)).hits


def precision_recall(hits: list, relevant: set[str], sizes: dict[str, int]) -> tuple[float, float]:
    right = sum(hit.class_name in relevant for hit in hits)
    return (right / len(hits) if hits else 1.0), right / sum(sizes[name] for name in relevant)


def cutoff_table(service: SearchService, sizes: dict[str, int]) -> list[str]:
    rows = {kind: {"auto": [], **{score: [] for score in FLAT_SCORES}} for kind in KINDS}
    counts: dict[str, list[int]] = {kind: [] for kind in KINDS}
    for kind, query, relevant in queries():
        hits = kept(service, query, cutoff="auto")
        counts[kind].append(len(hits))
        rows[kind]["auto"].append(precision_recall(hits, relevant, sizes))
        everything = kept(service, query)
        for score in FLAT_SCORES:
            rows[kind][score].append(precision_recall([h for h in everything if h.score >= score], relevant, sizes))
    lines = ["| query kind | queries | cut-off | precision | recall | kept per query |", "|---|---|---|---|---|---|"]
    for kind in KINDS:
        for name, found in rows[kind].items():
            precision, recall = np.mean(found, axis=0)
            label = "auto" if name == "auto" else f"min_score {name}"
            mean_kept = f"{np.mean(counts[kind]):.0f}" if name == "auto" else ""
            lines.append(f"| {kind} | {len(found)} | {label} | {precision:.3f} | {recall:.3f} | {mean_kept} |")
    return lines


def modes_table(service: SearchService, sizes: dict[str, int]) -> list[str]:
    """precision@10 and R-precision (the share of relevant images among the first R, R = how many there are)."""
    lines = ["| query kind | mode | precision@10 | R-precision |", "|---|---|---|---|"]
    for kind in KINDS:
        for mode in ("clip", "text", "hybrid"):
            found = []
            for query_kind, query, relevant in queries():
                if query_kind != kind:
                    continue
                count = sum(sizes[name] for name in relevant)
                hits = service.search(SearchRequest(parse_query(query), k=count, dataset="demo", mode=mode)).hits
                found.append((precision_recall(hits[:10], relevant, sizes)[0],
                              precision_recall(hits, relevant, sizes)[1]))
            precision, r_precision = np.mean(found, axis=0)
            lines.append(f"| {kind} | {mode} | {precision:.3f} | {r_precision:.3f} |")
    return lines


def bench(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-relevance-") as tmp:
        service, sizes, seconds = built(Path(tmp) / "demo", Path(tmp) / "workspace", args)
        print(f"\nmodel {args.model}; {sum(sizes.values())} images in {len(sizes)} classes; built in {seconds:.1f} s")
        print("\nWhat the cut-off keeps (means over the queries of each kind):\n")
        print("\n".join(cutoff_table(service, sizes)))
        print("\nModes (means over the queries of each kind):\n")
        print("\n".join(modes_table(service, sizes)))


def make_parser() -> argparse.ArgumentParser:
    parser = SmokeParser(__doc__, SMOKE)
    parser.add_argument("--per-class", type=int, default=50, help="images per class (36 classes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="demo")
    return parser


def main(argv: list[str] | None = None) -> None:
    run("search_relevance", make_parser(), bench, argv)


if __name__ == "__main__":
    main()
