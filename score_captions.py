#!/usr/bin/env python3
"""Score how well each caption fits its image, from a CSV of image-caption pairs.

    python score_captions.py pairs.csv [--images-dir DIR] [--out-dir DIR] [--model SPEC]

Writes output.csv (the rows, plus similarity, the best-matching other caption and its score, and an
error for rows whose image is missing or unreadable), image_captions.jpg and similarity_matrix.jpg.
"""
from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

from lib.cli import new_parser, run
from lib.settings import add_settings_arguments, settings_from_args


def make_parser() -> argparse.ArgumentParser:
    parser = new_parser(__doc__)
    parser.add_argument("csv", type=Path, help="CSV with an image column and a caption column")
    parser.add_argument("--images-dir", type=Path, help="folder the image paths are relative to (default: the CSV's)")
    parser.add_argument("--out-dir", type=Path, help="where to write the results (default: <csv name>_scores/)")
    parser.add_argument("--image-column", help="name of the image column (default: image, path, file, ...)")
    parser.add_argument("--caption-column", help="name of the caption column (default: caption, text, ...)")
    parser.add_argument("--max-grid", type=int, default=48, help="images shown in image_captions.jpg")
    parser.add_argument("--max-matrix", type=int, default=200, help="rows and columns of similarity_matrix.jpg")
    add_settings_arguments(parser, ["model", "precision", "backend", "inference_threads", "batch_size"])
    parser.add_argument("--no-progress", action="store_true")
    return parser


def score(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    from lib.captions.figures import draw_grid, draw_matrix
    from lib.captions.scores import read_pairs, score_pairs, write_output
    from lib.model.loading import encoder_for

    settings = settings_from_args(args)
    table = read_pairs(args.csv, args.image_column, args.caption_column)
    images_dir = args.images_dir or args.csv.resolve().parent
    out_dir = args.out_dir or args.csv.with_name(args.csv.stem + "_scores")
    out_dir.mkdir(parents=True, exist_ok=True)
    encoder = encoder_for(settings)
    scored = score_pairs(encoder, table, images_dir, settings.batch_size, progress=not args.no_progress)
    write_output(scored, out_dir / "output.csv")
    if scored.valid:
        draw_grid(scored, images_dir, out_dir / "image_captions.jpg", args.max_grid)
        draw_matrix(scored, out_dir / "similarity_matrix.jpg", args.max_matrix)
    own_best = sum(int(scored.matrix[i].argmax() == i) for i in range(len(scored.valid)))
    print(f"{len(table.rows)} rows: {len(scored.valid)} scored, {len(scored.errors)} with a missing or unreadable "
          f"image; {own_best} of {len(scored.valid)} images fit their own caption best; results in {out_dir}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"wall time {time.perf_counter() - started:.1f} s, peak memory {peak:.0f} MiB")


def main(argv: list[str] | None = None) -> None:
    run("score_captions", make_parser(), score, argv)


if __name__ == "__main__":
    main()
