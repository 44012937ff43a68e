#!/usr/bin/env python3
"""The catalog's search-side queries at scale: filtered_ids per filter and combined, and text_search.

A synthetic catalog (photos over ten years, 20 x 12 x 28 folders, sizes 100-4000 px, a caption per image)
written through Catalog as a build writes it, then each query timed (best of 3) and compared, in one run,
with the cost of listing every id of the dataset (what a filter saves the read side from doing in Python).

    .venv/bin/python -m bench.catalog_filters [--images 100000 1000000]

--smoke: 2,000 images.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Sized
from pathlib import Path

import numpy as np

from bench import SmokeParser
from lib.cli import run
from lib.store.catalog import Catalog, DatasetRecord, ImageRecord
from lib.store.identity import ModelIdentity
from lib.store.index_files import commit_partition
from lib.store.records import ImageText

DAY = 86_400 * 10**9
SMOKE = dict(images=[2_000])
WEEK, YEAR = (100 * DAY, 107 * DAY), (100 * DAY, 465 * DAY)
QUERIES: dict[str, Callable[[Catalog], Sized]] = {
    "every id (baseline)": lambda c: c.filtered_ids("d"),
    "a week": lambda c: c.filtered_ids("d", date_from_ns=WEEK[0], date_to_ns=WEEK[1]),
    "a year": lambda c: c.filtered_ids("d", date_from_ns=YEAR[0], date_to_ns=YEAR[1]),
    "folder y3 (5 %)": lambda c: c.filtered_ids("d", folder="y3"),
    "folder y3/m3/d3": lambda c: c.filtered_ids("d", folder="y3/m3/d3"),
    "min_width 3000 (26 %)": lambda c: c.filtered_ids("d", min_width=3000),
    "folder y3 + a week + min_width": lambda c: c.filtered_ids("d", folder="y3", date_from_ns=WEEK[0],
                                                               date_to_ns=WEEK[1], min_width=1000),
    "folder y3/m3/d3 + a year": lambda c: c.filtered_ids("d", folder="y3/m3/d3", date_from_ns=YEAR[0],
                                                         date_to_ns=YEAR[1]),
    "min_width 3000 + min_height 2900": lambda c: c.filtered_ids("d", min_width=3000, min_height=2900),
    "text 'blue' (1 in 7), 100": lambda c: c.text_search("d", "blue", 100),
    "text 'img 1234', 10": lambda c: c.text_search("d", "img 1234", 10),
}


def fill(catalog: Catalog, count: int, indexes: Path) -> None:
    """`count` images in one partition, committed as a build commits one (8-d zero vectors: only rows matter)."""
    rng = np.random.default_rng(0)
    widths, heights = rng.integers(100, 4000, count), rng.integers(100, 3000, count)
    days = rng.integers(0, 3650, count)
    records, texts = [], []
    for i in range(1, count + 1):
        folder = f"y{i % 20}/m{i % 12}/d{i % 28}"
        records.append(ImageRecord(i, "d", "p", f"{folder}/IMG_{i}.jpg", "", int(widths[i - 1]), int(heights[i - 1]),
                                   1, 1, "", "", b"", int(days[i - 1]) * DAY, "exif", "", 1, folder))
        texts.append(ImageText(i, f"IMG {i} jpg IMG_{i}", folder.replace("/", " "),
                               "blue sea" if i % 7 == 0 else "a red circle"))
    with catalog.transaction() as db:
        catalog.put_dataset(db, DatasetRecord("d", None, "flat", "flat", ModelIdentity("bench", "0" * 64, 8)))
    commit_partition(catalog, indexes, "d", "p", np.arange(1, count + 1), np.zeros((count, 8), np.float32),
                     added=records)
    with catalog.transaction() as db:
        catalog.put_image_text(db, "d", texts)


def best_ms(query: Callable[[Catalog], Sized], catalog: Catalog) -> tuple[float, int]:
    times, found = [], 0
    for _ in range(3):
        started = time.perf_counter()
        found = len(query(catalog))
        times.append(time.perf_counter() - started)
    return min(times) * 1000, found


def make_parser() -> argparse.ArgumentParser:
    parser = SmokeParser(__doc__, SMOKE)
    parser.add_argument("--images", type=int, nargs="+", default=[100_000, 1_000_000])
    return parser


def bench(args: argparse.Namespace) -> None:
    print("| images | query | ms | vs every id | ids |")
    print("|---|---|---|---|---|")
    for count in args.images:
        with tempfile.TemporaryDirectory(prefix="bench-filters-") as tmp:
            catalog = Catalog.in_folder(Path(tmp))
            fill(catalog, count, Path(tmp))
            baseline = None
            for name, query in QUERIES.items():
                ms, found = best_ms(query, catalog)
                baseline = baseline or ms
                print(f"| {count:,} | {name} | {ms:.1f} | {ms / baseline:.2f}x | {found:,} |")
            catalog.close()


def main(argv: list[str] | None = None) -> None:
    run("catalog_filters", make_parser(), bench, argv)


if __name__ == "__main__":
    main()
