#!/usr/bin/env python3
"""Group a whole indexed dataset into duplicates, in tiers, each group with the image to keep.

    python find_duplicates.py DATASET [--csv FILE] [--tier exact near] [--near X] [--similar Y] [--calibrate]
                                  [--videos]

Tiers: exact (byte-identical), near (the same picture re-encoded, resized, lightly cropped), similar
(a burst or a re-take). The near and similar thresholds are the ones calibrated for the dataset's model
(calibrated now, with that model, when there are none). Nothing is ever deleted: the summary and the CSV
(group,tier,keep,path,bytes,score) are for you to decide. The scenes of videos are left out unless --videos.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from lib.cli import new_parser, run
from lib.settings import add_settings_arguments, settings_from_args

TIERS = ("exact", "near", "similar")


def make_parser() -> argparse.ArgumentParser:
    parser = new_parser(__doc__)
    parser.add_argument("dataset", help="name of an indexed dataset")
    parser.add_argument("--csv", type=Path, help="write one row per image in a group to this CSV file")
    parser.add_argument("--tier", nargs="+", choices=TIERS, help="only groups of these tiers (default: all)")
    parser.add_argument("--near", type=float, help="cosine threshold of the near tier, instead of the calibrated one")
    parser.add_argument("--similar", type=float, help="cosine threshold of the similar tier")
    parser.add_argument("--calibrate", action="store_true", help="calibrate the thresholds again with the dataset's "
                                                                  "model and record them")
    parser.add_argument("--videos", action="store_true", help="group the scenes of videos too (a video copied "
                                                               "elsewhere, a picture that shows a scene)")
    parser.add_argument("--show", type=int, default=5, help="groups printed after the summary (default 5)")
    add_settings_arguments(parser, ["calibration_images", "precision", "backend", "inference_threads", "workspace"])
    return parser


def size_text(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return ""


def calibrated(settings, dataset, force: bool, needed: bool):
    """The recorded thresholds, or new ones calibrated with the dataset's own model when asked or needed."""
    from lib.ingest.calibrate import calibrate_duplicates
    from lib.model.loading import encoder_for
    from lib.store.dataset_figures import load_thresholds

    recorded = None if force else load_thresholds(settings.indexes_dir, dataset.record.name, dataset.record.model)
    if recorded is not None or not needed:
        return recorded
    print(f"calibrating the duplicate thresholds with {dataset.record.model.spec} ...")
    encoder = encoder_for(settings, dataset.record.model.spec)
    return calibrate_duplicates(settings.indexes_dir, dataset.record.name, encoder, settings.calibration_images or 48)


def print_report(report, groups, show: int) -> None:
    from lib.store.names import shown_moment

    t = report.thresholds
    source = ("defaults: too few images to calibrate on" if t.defaults else
              f"calibrated {t.calibrated_at}" if t.calibrated_at else "given")
    print(f"dataset {report.dataset}: {len(report.paths):,} images; near >= {t.near:.4f}, similar >= "
          f"{t.similar:.4f} ({source})")
    print("| tier | groups | images | to free |\n|---|---|---|---|")
    for tier, total in report.totals().items():
        print(f"| {tier} | {total.groups:,} | {total.images:,} | {size_text(total.bytes_freed)} |")
    for group in groups[:show]:
        print(f"\ngroup {group.number} ({group.tier}), frees {size_text(group.bytes_freed)}:")
        for m in group.members:
            print(f"  {'keep' if m.keep else '    '} {m.score:.4f}  {shown_moment(m.path, m.video_start, m.video_end)} "
                  f"({m.width}x{m.height}, "
                  f"{size_text(m.bytes)})")


def find(args: argparse.Namespace) -> None:
    from lib.serve.duplicate_finder import group_dataset
    from lib.serve.duplicates import resolve_thresholds, write_csv
    from lib.serve.index_set import load_dataset
    from lib.store.catalog import Catalog

    settings = settings_from_args(args)
    dataset = load_dataset(settings.indexes_dir, args.dataset)
    recorded = calibrated(settings, dataset, args.calibrate, args.calibrate or None in (args.near, args.similar))
    thresholds = resolve_thresholds(recorded, args.dataset, args.near, args.similar)
    catalog = Catalog.in_folder(settings.indexes_dir, readonly=True)
    try:
        report = group_dataset(dataset, catalog, thresholds, videos=args.videos)
    finally:
        catalog.close()
    groups = [g for g in report.groups if not args.tier or g.tier in args.tier]
    print_report(report, groups, args.show)
    if args.csv:
        write_csv(groups, args.csv)
        print(f"\nwrote {sum(len(g.members) for g in groups):,} rows of {len(groups):,} groups to {args.csv}")
    print("nothing was deleted")


def main(argv: list[str] | None = None) -> None:
    run("find_duplicates", make_parser(), find, argv)


if __name__ == "__main__":
    main()
