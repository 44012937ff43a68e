#!/usr/bin/env python3
"""Score how well each caption fits its image over a table of image-caption pairs of any size, flag the
pairs most likely mismatched, and suggest better captions and images from the pool.

    python score_captions.py pairs.csv [--images-dir DIR] [--out-dir DIR] [--suggest K] [--model SPEC]
    python score_captions.py pairs.parquet --image-embeddings EMBEDDINGS_FOLDER
    python score_captions.py EMBEDDINGS_FOLDER           (clip-retrieval: img_emb/ + metadata/ with captions)

Writes output.csv (every row, plus similarity, best_other_caption, best_other_score, error,
rank_of_own_caption and z), outliers.csv, suggestions.csv (with --suggest), score_histogram.jpg,
image_captions.jpg, similarity_matrix.jpg and report.html; the last line printed is a JSON summary.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from lib.cli import new_parser, run
from lib.settings import add_settings_arguments, settings_from_args


def non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def make_parser() -> argparse.ArgumentParser:
    parser = new_parser(__doc__)
    parser.add_argument("pairs", type=Path,
                        help="CSV or Parquet file with an image column and a caption column, or a clip-retrieval "
                             "embeddings folder whose metadata has a caption column")
    parser.add_argument("--images-dir", type=Path,
                        help="folder the image paths are relative to (default: the table's folder)")
    parser.add_argument("--image-embeddings", type=Path,
                        help="clip-retrieval embeddings folder (img_emb/, metadata/ with image_path) that already "
                             "holds the image vectors; images are then not opened")
    parser.add_argument("--out-dir", type=Path, help="where to write the results (default: <input name>_scores/)")
    parser.add_argument("--image-column", help="name of the image column (default: image, path, file, ...)")
    parser.add_argument("--caption-column", help="name of the caption column (default: caption, text, ...)")
    parser.add_argument("--outliers", type=non_negative, default=1000, help="most rows written to outliers.csv")
    parser.add_argument("--outlier-z", type=float, default=3.0,
                        help="cut-off in robust standard deviations (1.4826 x MAD) from the median (default: 3)")
    parser.add_argument("--suggest", type=non_negative, default=0, metavar="K",
                        help="write suggestions.csv: the K best other captions of each image, images of each caption")
    parser.add_argument("--max-grid", type=non_negative, default=48, help="pairs shown in image_captions.jpg")
    parser.add_argument("--max-matrix", type=non_negative, default=30, help="images in similarity_matrix.jpg")
    parser.add_argument("--videos", action="store_true", help="score rows whose image is a video too: its frame at "
                                                               "the row's '#t=' moment (a scene as exported), else "
                                                               "its first; left out by default")
    parser.add_argument("--chunk-rows", type=non_negative, default=10_000, help="rows read into memory at a time")
    add_settings_arguments(parser, ["model", "precision", "backend", "inference_threads", "batch_size",
                                    "num_workers", "workspace"])
    parser.add_argument("--no-progress", action="store_true")
    return parser


def score(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    from lib.captions.options import ScoreOptions
    from lib.captions.pairs import open_pairs
    from lib.captions.pipeline import score_captions
    from lib.model.loading import encoder_for

    settings = settings_from_args(args)
    source = open_pairs(args.pairs, args.image_column, args.caption_column)
    options = ScoreOptions(
        images_dir=args.images_dir or (args.pairs if args.pairs.is_dir() else args.pairs.resolve().parent),
        out_dir=args.out_dir or args.pairs.with_name(args.pairs.stem + "_scores"),
        image_embeddings=args.image_embeddings, chunk_rows=max(1, args.chunk_rows), outliers=args.outliers,
        cut=args.outlier_z, suggest=args.suggest, max_grid=args.max_grid, max_matrix=args.max_matrix,
        progress=not args.no_progress, videos=args.videos)
    encoder = encoder_for(settings)
    summary = score_captions(source, encoder, settings.batch_size, settings.num_workers, options, started)
    print(f"{summary['rows']:,} rows: {summary['scored']:,} scored, {summary['errors']:,} with a missing or "
          f"unreadable image or no caption; {summary['own_caption_best']:,} fit their own caption better than any "
          f"caption of another image; {summary['outliers']:,} outliers; results in {options.out_dir}")
    print(json.dumps(summary))


def main(argv: list[str] | None = None) -> None:
    run("score_captions", make_parser(), score, argv)


if __name__ == "__main__":
    main()
