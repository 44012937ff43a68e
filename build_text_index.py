#!/usr/bin/env python3
"""Encode a vocabulary into a FAISS index of prompt embeddings: indexes_text/text_<vocab>_<dim>.index.

    python build_text_index.py VOCAB_NAME VOCAB_SOURCE [options]

VOCAB_SOURCE is a text file (one entry per line), JSON (a list, or a mapping of id to name), CSV
(--column), tiny-imagenet words.txt, or an http(s) URL (downloaded once into cache/).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from lib.cli import new_parser, run
from lib.data.vocabulary import FORMATS
from lib.settings import add_settings_arguments, settings_from_args


def make_parser() -> argparse.ArgumentParser:
    parser = new_parser(__doc__)
    parser.add_argument("vocab_name", nargs="?", default=None, help="name of the vocabulary (default from settings)")
    parser.add_argument("vocab_source", nargs="?", default=None, help="file or URL (default from settings)")
    parser.add_argument("--format", default="auto", choices=FORMATS, help="how to read the source")
    parser.add_argument("--column", help="CSV column holding the labels (name or number)")
    parser.add_argument("--templates", type=Path, help="file of prompt templates, one per line with {}")
    parser.add_argument("--rebuild", action="store_true", help="replace an index built with another model")
    add_settings_arguments(parser, ["model", "precision", "backend", "inference_threads", "workspace"])
    parser.add_argument("--no-progress", action="store_true")
    return parser


def build(args: argparse.Namespace) -> None:
    from lib.data.datasets import safe_name
    from lib.data.vocabulary import is_url, read_vocabulary
    from lib.ingest.text_index import build_text_index
    from lib.model.loading import encoder_for
    from lib.model.prompts import read_templates

    settings = settings_from_args(args, {"vocab_name": args.vocab_name, "vocab_source": args.vocab_source})
    source = settings.vocab_source if is_url(settings.vocab_source) else str(settings.resolve(settings.vocab_source))
    entries, stats = read_vocabulary(source, settings.cache_dir, args.format, args.column)
    templates = read_templates(args.templates)
    encoder = encoder_for(settings)
    report = build_text_index(safe_name(settings.vocab_name), entries, stats, encoder, settings.indexes_text_dir,
                              settings.cache_dir, templates, progress=not args.no_progress, rebuild=args.rebuild)
    print(report.summary())


def main(argv: list[str] | None = None) -> None:
    run("build_text_index", make_parser(), build, argv)


if __name__ == "__main__":
    main()
