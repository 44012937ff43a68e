#!/usr/bin/env python3
"""Encode a folder of images into per-partition FAISS indexes: indexes/image_<dataset>_<partition>_<dim>.index.

    python build_image_index.py DATASET_NAME DATASET_PATH [options]
    python build_image_index.py DATASET_NAME --from-embeddings DIR --model SPEC [--images-root DIR]
                                [--class-column COLUMN]

Incremental: a re-run encodes only added and changed files and drops deleted ones. --from-embeddings
imports vectors computed elsewhere (clip-retrieval's img_emb/ + metadata/ folder) instead of encoding.
A dataset of ivf_min_vectors or more is searched through IVF (index type auto).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from lib.cli import new_parser, run
from lib.errors import ClipSearchError
from lib.settings import add_settings_arguments, settings_from_args

MAX_LISTED = 1000  # skipped files printed; the report file lists all of them


def add_remembered_switch(parser: argparse.ArgumentParser, name: str, on: str, off: str) -> None:
    """--NAME and --no-NAME for a setting of on, off or auto, which a dataset's later builds keep."""
    parser.add_argument(f"--{name}", dest=name, action="store_const", const="on", default=None,
                        help=f"{on}; later builds of the dataset keep doing so (default: what its last build did, off "
                             "for a new dataset)")
    parser.add_argument(f"--no-{name}", dest=name, action="store_const", const="off", help=off)


def make_parser() -> argparse.ArgumentParser:
    parser = new_parser(__doc__)
    parser.add_argument("dataset_name", nargs="?", default=None, help="name of the dataset (default from settings)")
    parser.add_argument("dataset_path", nargs="?", default=None, help="folder of images (default from settings)")
    add_settings_arguments(parser, ["layout", "partition_size", "model", "index_type", "memory_budget",
                                    "ivf_min_vectors", "target_recall", "embeddings_partition_size", "precision",
                                    "backend", "inference_threads", "batch_size", "num_workers", "calibration_images",
                                    "engine", "ray_address", "follow_links", "ocr_engine", "ocr_workers",
                                    "ocr_time_limit", "video_time_limit", "store", "hnsw_m", "hnsw_ef_construction",
                                    "workspace"])
    add_remembered_switch(parser, "ocr", "read the words in the pictures after their vectors are committed, for "
                          "text search", "do not read words in pictures (text already read is kept)")
    add_remembered_switch(parser, "regions", "also index each sub-picture of a collage, screenshot or slide as an "
                          "entry of its own, so that one photo finds the picture that holds it",
                          "index pictures whole only (their region entries are removed)")
    parser.add_argument("--from-embeddings", type=Path, metavar="DIR",
                        help="import a clip-retrieval embeddings folder (img_emb/, metadata/) instead of images")
    parser.add_argument("--images-root", type=Path, metavar="DIR",
                        help="with --from-embeddings: the folder the image_path column is relative to, for /images")
    parser.add_argument("--class-column", metavar="COLUMN",
                        help="with --from-embeddings: partition by this metadata column (else by chunks of rows)")
    parser.add_argument("--rebuild", action="store_true",
                        help="drop the dataset's indexes and build them again (needed to change the model)")
    parser.add_argument("--retrain", action="store_true",
                        help="train the dataset's IVF quantizer again (the build says when it should)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def build(args: argparse.Namespace) -> None:
    from lib.data.datasets import check_name
    from lib.ingest.calibrate import calibrate_build
    from lib.ingest.embeddings_import import import_embeddings
    from lib.ingest.image_index import build_image_index
    from lib.ingest.store_copy import check_store
    from lib.model.loading import encoder_for

    if args.from_embeddings and args.dataset_path:
        raise ClipSearchError("give either a folder of images or --from-embeddings DIR, not both")
    if (args.images_root or args.class_column) and not args.from_embeddings:
        raise ClipSearchError("--images-root and --class-column go with --from-embeddings")
    settings = settings_from_args(args, {"dataset_name": args.dataset_name, "dataset_path": args.dataset_path})
    check_name(settings.dataset_name, "dataset")
    check_store(settings)
    started = time.perf_counter()
    encoder = encoder_for(settings)
    loaded = time.perf_counter() - started
    options = dict(rebuild=args.rebuild, progress=not args.no_progress, retrain=args.retrain)
    if args.from_embeddings:
        report = import_embeddings(settings, encoder, args.from_embeddings, args.images_root, args.class_column,
                                   **options)
    else:
        report = build_image_index(settings, encoder, calibrate=False, **options)
    report.load_s = loaded
    for path, reason in report.skipped_lines()[:MAX_LISTED]:
        print(f"skipped {path}: {reason}")
    for path, reason in report.unread_lines()[:MAX_LISTED]:
        print(f"{path}: {reason}")
    if len(report.skipped) > MAX_LISTED:
        print(f"... and {len(report.skipped) - MAX_LISTED} more skipped (all are in the report file)")
    print(report.summary(), flush=True)
    for note in report.notes:
        print(note)
    if not args.from_embeddings:  # after the summary: the index is committed, and served, already
        calibrate_build(settings, encoder, report)
    if report.thresholds is not None:
        print(report.calibration())
    print(f"skipped-file report: {report.report_file}")


def main(argv: list[str] | None = None) -> None:
    run("build_image_index", make_parser(), build, argv)


if __name__ == "__main__":
    main()
