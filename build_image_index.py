#!/usr/bin/env python3
"""Encode a folder of images into per-partition FAISS indexes: indexes/image_<dataset>_<partition>_<dim>.index.

    python build_image_index.py DATASET_NAME DATASET_PATH [options]

Incremental: a re-run encodes only added and changed files and drops deleted ones.
"""
from __future__ import annotations

import argparse

from lib.cli import new_parser, run
from lib.settings import add_settings_arguments, settings_from_args


def make_parser() -> argparse.ArgumentParser:
    parser = new_parser(__doc__)
    parser.add_argument("dataset_name", nargs="?", default=None, help="name of the dataset (default from settings)")
    parser.add_argument("dataset_path", nargs="?", default=None, help="folder of images (default from settings)")
    add_settings_arguments(parser, ["layout", "partition_size", "model", "index_type", "precision", "backend",
                                    "inference_threads", "batch_size", "num_workers", "calibration_images", "engine",
                                    "ray_address", "workspace"])
    parser.add_argument("--rebuild", action="store_true",
                        help="drop the dataset's indexes and build them again (needed to change the model)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def build(args: argparse.Namespace) -> None:
    from lib.build.image_index import build_image_index
    from lib.data.datasets import check_name
    from lib.model.loading import encoder_for

    settings = settings_from_args(args, {"dataset_name": args.dataset_name, "dataset_path": args.dataset_path})
    check_name(settings.dataset_name, "dataset")
    encoder = encoder_for(settings)
    report = build_image_index(settings, encoder, rebuild=args.rebuild, progress=not args.no_progress)
    for path, reason in sorted(report.skipped.items()):
        print(f"skipped {path}: {reason}")
    print(report.summary())
    if report.thresholds is not None:
        print(report.calibration())
    print(f"skipped-file report: {report.report_file}")


def main(argv: list[str] | None = None) -> None:
    run("build_image_index", make_parser(), build, argv)


if __name__ == "__main__":
    main()
