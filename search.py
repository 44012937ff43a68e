#!/usr/bin/env python3
"""Search an indexed dataset from a terminal, against the index files on disk (no server needed).

    python search.py DATASET "query" [-k N] [--offset N] [--json] [--relevant | --min-score X]
                     [--date-from D] [--date-to D] [--folder F] [--min-width W] [--min-height H]
                     [--ocr WORDS] [--sort relevance|newest|oldest] [--mode clip|text|hybrid] [--image FILE ...]

The query is read as the search box reads it: `red circle - circle + square`, `2:red`, `img:12` (README,
"Composed queries"). Prints one ranked path a line with its score (paths relative to the dataset's
folder) and, for a picture whose words matched, the words; or the API's answer as JSON with --json.
"""
from __future__ import annotations

import argparse
import json

from lib.cli import new_parser, run
from lib.settings import add_settings_arguments, settings_from_args


def make_parser() -> argparse.ArgumentParser:
    parser = new_parser(__doc__)
    parser.add_argument("dataset", help="name of an indexed dataset")
    parser.add_argument("query", nargs="?", help="what to look for (the search box's grammar); may be left out "
                                                 "with --image")
    parser.add_argument("-k", type=int, default=10, help="how many results (default 10)")
    parser.add_argument("--offset", type=int, default=0, help="results to skip (the next page starts at offset + k)")
    parser.add_argument("--json", action="store_true", help="print the answer as the API gives it, as JSON")
    parser.add_argument("--relevant", action="store_true", help="only results above the query's own cut-off "
                                                                "(cutoff auto)")
    parser.add_argument("--min-score", type=float, help="only results whose cosine reaches this")
    parser.add_argument("--date-from", help="captured at or after this ISO 8601 date or date-time")
    parser.add_argument("--date-to", help="captured at or before this ISO 8601 date (that whole day) or date-time")
    parser.add_argument("--folder", help="only images under this folder (relative to the dataset's folder)")
    parser.add_argument("--min-width", type=int, help="only images at least this wide (pixels)")
    parser.add_argument("--min-height", type=int, help="only images at least this high (pixels)")
    parser.add_argument("--ocr", metavar="WORDS", dest="ocr_words",
                        help="only images whose words read by OCR hold these (substrings of three letters or more)")
    parser.add_argument("--sort", choices=("relevance", "newest", "oldest"), default="relevance",
                        help="order of the relevant results (default relevance)")
    parser.add_argument("--mode", choices=("clip", "text", "hybrid"), default="clip",
                        help="clip (default), text (names, captions, words read in the pictures), hybrid "
                             "(both, fused)")
    parser.add_argument("--image", action="append", default=[], metavar="FILE",
                        help="an image file as one more term of the query (weight 1); may be repeated")
    parser.add_argument("--partition", action="append", metavar="NAME", help="search only this partition "
                                                                              "(may be repeated)")
    parser.add_argument("--exact", action="store_true", help="scan every vector instead of probing IVF lists")
    add_settings_arguments(parser, ["precision", "backend", "inference_threads", "workspace"])
    return parser


def search(args: argparse.Namespace) -> None:
    from dataclasses import asdict

    from lib.data.images import open_image
    from lib.errors import QueryError
    from lib.model.loading import encoder_for
    from lib.serve.index_set import LiveIndexSet, load_dataset
    from lib.serve.paged_search import SearchFilters, SearchRequest, page_fields, parse_instant
    from lib.serve.query_terms import Term, parse_query
    from lib.serve.search import SearchService
    from lib.store.names import shown, shown_moment

    if args.query is None and not args.image:
        raise QueryError("give a query, an --image, or both")
    if args.k < 1 or args.offset < 0:
        raise QueryError("-k must be 1 or more and --offset 0 or more")
    settings = settings_from_args(args)
    dataset = load_dataset(settings.indexes_dir, args.dataset)
    encoder = encoder_for(settings, dataset.record.model.spec)
    service = SearchService(encoder, LiveIndexSet(settings.indexes_dir, settings.indexes_text_dir, encoder.identity))
    terms = parse_query(args.query) if args.query is not None else []
    uploads = [open_image(path) for path in args.image]
    terms += [Term(1.0, upload=n) for n in range(len(uploads))]
    filters = SearchFilters(parse_instant(args.date_from) if args.date_from else None,
                            parse_instant(args.date_to, end_of_day=True) if args.date_to else None,
                            args.folder, args.min_width, args.min_height, args.ocr_words)
    request = SearchRequest(terms, args.k, args.offset, args.dataset, args.partition, args.exact, args.min_score,
                            "auto" if args.relevant else None, filters, args.sort, args.mode, uploads)
    page = service.search(request)
    if args.json:
        print(json.dumps({**page_fields(page, args.query, request), "k": args.k,
                          "results": [{**asdict(hit), "path": shown(hit.path)} for hit in page.hits]}, indent=1))
        return
    for hit in page.hits:
        when = f"  {hit.captured_at[:10]}" if hit.captured_at and args.sort != "relevance" else ""
        words = "  [" + " | ".join(box.text for box in hit.text_matches) + "]" if hit.text_matches else ""
        print(f"{hit.score:.4f}{when}  {shown_moment(hit.path, hit.video_start, hit.video_end)}{words}")
    if page.cutoff_score is not None:
        print(f"# results score at least {page.cutoff_score:.4f}")
    if page.next_offset is not None:
        print(f"# more: --offset {page.next_offset}")


def main(argv: list[str] | None = None) -> None:
    run("search", make_parser(), search, argv)


if __name__ == "__main__":
    main()
