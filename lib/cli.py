"""The one convention of every entry point: the same flags for logging, the same logging set-up, and
lib's errors turned into one line on stderr with exit status 2 (130 on Ctrl-C)."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from lib.errors import ClipSearchError

QUIET_LOGGERS = ("httpx", "httpcore", "urllib3", "filelock", "huggingface_hub", "transformers", "faiss.loader",
                 "matplotlib", "PIL")


def new_parser(description: str | None) -> argparse.ArgumentParser:
    """An argument parser that keeps the docstring's layout and has --verbose."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--verbose", action="store_true", help="log debug messages")
    return parser


def setup_logging(verbose: bool = False) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers reads it too, when first imported
    if not verbose:  # Ray's C++ core logs retries and lost nodes to stderr; lib/ingest/ray_cluster says it in one line
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in QUIET_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)


@contextmanager
def user_errors(program: str) -> Iterator[None]:
    """Exit with status 2 and one line on stderr for errors meant for the user; 130 on Ctrl-C."""
    try:
        yield
    except (ClipSearchError, FileNotFoundError) as err:
        print(f"{program}: error: {err}", file=sys.stderr)
        if getattr(err, "leave_at_once", False):  # no interpreter teardown (see lib.errors.ClusterLostError)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(2)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"{program}: interrupted; what was finished is kept, run again to do the rest", file=sys.stderr)
        sys.exit(130)


def run(program: str, parser: argparse.ArgumentParser, body: Callable[[argparse.Namespace], None],
        argv: list[str] | None = None) -> None:
    """Parse the flags, set up logging, and run `body` with lib's errors turned into one line."""
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    with user_errors(program):
        body(args)
