"""Read a vocabulary (txt, JSON, CSV, tiny-imagenet words.txt or an http(s) URL) into entries."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from lib.data.datasets import parse_words
from lib.errors import VocabularyError
from lib.store.files import write_atomic
from lib.store.vocab_index import VocabEntry

log = logging.getLogger(__name__)

FORMATS = ("auto", "txt", "json", "csv", "words")
WNID = re.compile(r"n\d{8}")
WNID_LINE = re.compile(r"^n\d{8}\t")
DOWNLOAD_LIMIT = 200 * 1024 * 1024


@dataclass
class VocabStats:
    read: int = 0
    blank: int = 0
    duplicates: int = 0


def is_url(source: str) -> bool:
    return urlparse(source).scheme in ("http", "https")


def fetch(url: str, cache_dir: Path, timeout: float = 30.0) -> Path:
    """Download a URL once into the cache; later calls use the cached copy."""
    import requests

    name = Path(urlparse(url).path).name or "vocabulary"
    path = cache_dir / "vocab" / f"{hashlib.sha256(url.encode()).hexdigest()[:16]}-{name}"
    if path.is_file():
        return path
    try:
        response = requests.get(url, timeout=timeout)
        response.raise_for_status()
    except requests.RequestException as err:
        raise VocabularyError(f"cannot download vocabulary {url}: {err}") from None
    if len(response.content) > DOWNLOAD_LIMIT:
        raise VocabularyError(f"vocabulary {url} is larger than {DOWNLOAD_LIMIT // 2**20} MiB")
    write_atomic(response.content, path)
    log.info("downloaded %s to %s", url, path)
    return path


def detect_format(path: Path, text: str) -> str:
    suffix = path.suffix.lower()
    if suffix == ".json":
        return "json"
    if suffix in (".csv", ".tsv"):
        return "csv"
    first = next((line for line in text.splitlines() if line.strip()), "")
    return "words" if path.name.endswith("words.txt") or WNID_LINE.match(first) else "txt"


def _from_txt(text: str) -> list[VocabEntry]:
    return [VocabEntry(str(i), line) for i, line in enumerate(text.splitlines())]


def _from_words(text: str, wnids: set[str] | None) -> list[VocabEntry]:
    return [VocabEntry(wnid, name) for wnid, name in parse_words(text).items() if wnids is None or wnid in wnids]


def _from_json(text: str) -> list[VocabEntry]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise VocabularyError(f"vocabulary is not valid JSON: {err}") from None
    if isinstance(data, list):
        return [VocabEntry(str(i), _label(value)) for i, value in enumerate(data)]
    if isinstance(data, dict):
        return [VocabEntry(str(key), _label(value)) for key, value in data.items()]
    raise VocabularyError("a JSON vocabulary must be a list of names or a mapping of id to name")


def _label(value: object) -> str:
    """A JSON value as a label: a string; for a list, its first name that is not a wnid
    (imagenet_class_index.json maps "0" to ["n01440764", "tench"])."""
    if isinstance(value, list):
        names = [str(v) for v in value if not WNID.fullmatch(str(v))]
        value = names[0] if names else ""
    return "" if value is None else str(value)


def _from_csv(text: str, delimiter: str, column: str | None) -> list[VocabEntry]:
    rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    if not rows:
        return []
    header = [h.strip() for h in rows[0]]
    if column is None:
        wanted: str | None = next((h for h in ("label", "name", "class", "text", "caption") if h in header), None)
    else:
        wanted = column
    if wanted is not None and wanted in header:
        at, body = header.index(wanted), rows[1:]
    elif column is not None and column.isdigit():
        at, body = int(column), rows
    elif column is not None:
        raise VocabularyError(f"CSV vocabulary has no column {column!r}; its columns are {', '.join(header)}")
    else:
        at, body = 0, rows
    return [VocabEntry(str(i), row[at] if at < len(row) else "") for i, row in enumerate(body)]


def clean(entries: Iterable[VocabEntry], stats: VocabStats) -> list[VocabEntry]:
    """Drop blank labels and repeated ones (compared case- and space-insensitively), keeping the first."""
    seen, kept = set(), []
    for entry in entries:
        stats.read += 1
        label = " ".join(entry.label.split())
        key = label.casefold()
        if not label:
            stats.blank += 1
        elif key in seen:
            stats.duplicates += 1
        else:
            seen.add(key)
            kept.append(VocabEntry(entry.id, label))
    return kept


def read_vocabulary(source: str, cache_dir: Path, fmt: str = "auto", column: str | None = None
                    ) -> tuple[list[VocabEntry], VocabStats]:
    """The entries of a vocabulary source, cleaned, with counts of what was dropped."""
    path = fetch(source, cache_dir) if is_url(source) else Path(source).expanduser()
    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as err:
        raise VocabularyError(f"cannot read vocabulary {source}: {err.strerror}") from None
    fmt = detect_format(path, text) if fmt == "auto" else fmt
    if fmt == "json":
        raw = _from_json(text)
    elif fmt == "csv":
        raw = _from_csv(text, "\t" if path.suffix.lower() == ".tsv" else ",", column)
    elif fmt == "words":
        wnids_file = path.with_name("wnids.txt")
        wnids = set(wnids_file.read_text().split()) if not is_url(source) and wnids_file.is_file() else None
        raw = _from_words(text, wnids)
    else:
        raw = _from_txt(text)
    stats = VocabStats()
    entries = clean(raw, stats)
    if not entries:
        raise VocabularyError(f"vocabulary {source} has no entries (read as {fmt}, {stats.read} blank or repeated)")
    return entries, stats
