"""What the command-line tools share: logging set-up and turning lib's errors into one clear line."""
from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager
from typing import Iterator

from lib.errors import ClipSearchError
from lib.hparams import SettingsError


def setup_logging(verbose: bool = False) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "httpcore", "urllib3", "filelock", "huggingface_hub", "transformers", "faiss.loader"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()


@contextmanager
def user_errors(program: str) -> Iterator[None]:
    """Exit with status 2 and one line on stderr for errors meant for the user; 130 on Ctrl-C."""
    try:
        yield
    except (ClipSearchError, SettingsError, FileNotFoundError) as err:
        print(f"{program}: error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"{program}: interrupted; finished partitions are kept, run again to finish the rest",
              file=sys.stderr)
        sys.exit(130)
