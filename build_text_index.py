#!/usr/bin/env python3
"""Encode a vocabulary into a FAISS index of prompt embeddings: indexes_text/text_<vocab>_<dim>.index.

    python build_text_index.py VOCAB_NAME VOCAB_SOURCE [options]

VOCAB_SOURCE is a text file (one entry per line), JSON (a list, or a mapping of id to name), CSV
(--column), tiny-imagenet words.txt, or an http(s) URL (downloaded once into cache/).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from lib.cli import setup_logging, user_errors
from lib.hparams import add_settings_arguments, settings_from_args
from lib.vocabulary import FORMATS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("vocab_name", nargs="?", default=None, help="name of the vocabulary (default from settings)")
    parser.add_argument("vocab_source", nargs="?", default=None, help="file or URL (default from settings)")
    parser.add_argument("--format", default="auto", choices=FORMATS, help="how to read the source")
    parser.add_argument("--column", help="CSV column holding the labels (name or number)")
    parser.add_argument("--templates", type=Path, help="file of prompt templates, one per line with {}")
    parser.add_argument("--rebuild", action="store_true", help="replace an index built with another model")
    add_settings_arguments(parser, ["model", "precision", "workspace"])
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging(args.verbose)
    with user_errors("build_text_index"):
        from lib.datasets import safe_name
        from lib.model import load_encoder
        from lib.text_index import build_text_index, read_templates
        from lib.vocabulary import is_url, read_vocabulary

        settings = settings_from_args(args, {"vocab_name": args.vocab_name, "vocab_source": args.vocab_source})
        source = settings.vocab_source if is_url(settings.vocab_source) else str(settings.resolve(settings.vocab_source))
        entries, stats = read_vocabulary(source, settings.cache_dir, args.format, args.column)
        templates = read_templates(args.templates)
        encoder = load_encoder(settings.model, precision=settings.precision)
        report = build_text_index(safe_name(settings.vocab_name), entries, stats, encoder, settings.indexes_text_dir,
                                  settings.cache_dir, templates, progress=not args.no_progress, rebuild=args.rebuild)
        print(report.summary())


if __name__ == "__main__":
    main()
