"""What an image is found by in text search: its file and folder names split into words, and its captions,
from a `captions.csv` at the dataset root (header `image,caption`, paths relative to the root) or a `.txt`
sidecar beside the image with the same stem (`a/b.jpg`: `a/b.txt`)."""
from __future__ import annotations

import csv
import io
import logging
import re
from pathlib import Path

log = logging.getLogger(__name__)

CAPTIONS_FILE = "captions.csv"
SIDECAR_SUFFIX = ".txt"
MAX_CAPTION_BYTES = 64 * 1024  # a sidecar longer than this is read only this far
BREAKS = re.compile(r"[\s_.\-/]+")


def _case_breaks(chunk: str) -> list[str]:
    """'holidayBeach' -> holiday, Beach; 'HTMLParser' -> HTML, Parser; 'IMG2041' -> IMG, 2041."""
    words, start = [], 0
    for k in range(1, len(chunk)):
        before, here, after = chunk[k - 1], chunk[k], chunk[k + 1:k + 2]
        if ((before.islower() and here.isupper()) or (before.isupper() and here.isupper() and after.islower())
                or (before.isdigit() != here.isdigit() and (before.isalpha() or here.isalpha()))):
            words.append(chunk[start:k])
            start = k
    return words + [chunk[start:]]


def name_words(name: str) -> str:
    """A file or folder name as words, split at '_', '-', '.', '/', spaces and case changes
    ('IMG_2041-holidayBeach.jpg' -> 'IMG 2041 holiday Beach jpg'); a chunk that was split is kept whole at
    the end too, so that a search for 'holidayBeach' finds it as well as one for 'beach'."""
    readable = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")  # bytes not UTF-8: U+FFFD
    chunks = [chunk for chunk in BREAKS.split(readable) if chunk]
    split = [_case_breaks(chunk) for chunk in chunks]
    return " ".join([word for words in split for word in words]
                    + [chunk for chunk, words in zip(chunks, split, strict=True) if len(words) > 1])


def sidecar_of(path: str) -> str:
    """The caption file of an image path ('a/b.jpg' -> 'a/b.txt')."""
    folder, _, name = path.rpartition("/")
    stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    return f"{folder}/{stem}{SIDECAR_SUFFIX}" if folder else f"{stem}{SIDECAR_SUFFIX}"


def caption_files(paths: set[str]) -> set[str]:
    """The paths among a scan's that hold captions, not pictures: the root's captions.csv, and each .txt beside
    another scanned file of the same stem. A build indexes neither and does not report them as skipped."""
    captions = {sidecar_of(p) for p in paths if not p.lower().endswith(SIDECAR_SUFFIX)} & paths
    return captions | ({CAPTIONS_FILE} & paths)


def _clean(path: str) -> str:
    path = path.strip().replace("\\", "/")
    return path[2:] if path.startswith("./") else path


def parse_captions(text: str) -> dict[str, str]:
    """captions.csv's rows as path -> caption; an image listed more than once gets its captions joined by ' / '."""
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or not {"image", "caption"} <= set(reader.fieldnames):
        log.warning("%s has no 'image,caption' header (it has %s); its captions are not indexed", CAPTIONS_FILE,
                    reader.fieldnames)
        return {}
    captions: dict[str, str] = {}
    for row in reader:
        path, caption = _clean(row["image"] or ""), (row["caption"] or "").strip()
        if path and caption:
            captions[path] = f"{captions[path]} / {caption}" if path in captions else caption
    return captions


def read_captions(root: Path) -> dict[str, str]:
    """The captions of a dataset's captions.csv (empty when it has none)."""
    path = root / CAPTIONS_FILE
    if not path.is_file():
        return {}
    return parse_captions(path.read_text(encoding="utf-8", errors="replace"))


def read_sidecar(path: Path) -> str:
    """The text of a caption file ('' when it cannot be read: it is tried again when it changes)."""
    try:
        with path.open("rb") as file:
            return file.read(MAX_CAPTION_BYTES).decode("utf-8", errors="replace").strip()
    except OSError as err:
        log.warning("caption file %s not read: %s", path, err.strerror)
        return ""
