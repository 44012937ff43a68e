"""Find the images of a dataset and split them into partitions, for each of the three layouts."""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from PIL import Image

from lib.data.dataset_files import DatasetWalk, Entry
from lib.data.images import register_formats
from lib.data.videos import VIDEO_EXTENSIONS
from lib.errors import ClipSearchError

LAYOUTS = ("tiny-imagenet", "folders", "flat")


@dataclass(frozen=True)
class ImageFile:
    """One file of a dataset, as found on disk; `path` is relative to the dataset root, with '/'."""

    path: str
    partition: str
    class_name: str
    bytes: int
    mtime_ns: int
    target: str = ""  # where a link followed out of the dataset's folder leads (resolved); '' for the others


class DatasetScan(NamedTuple):
    """What a scan found: the layout, the files to index and what was left out for where it leads, with why."""

    layout: str
    files: list[ImageFile]
    refused: dict[str, str]


def image_extensions() -> set[str]:
    """What Pillow can open here, HEIC and AVIF included."""
    register_formats()
    Image.init()
    return {ext.lower() for ext in Image.registered_extensions()}


def safe_name(name: str) -> str:
    """A partition or dataset name that can stand in a file name: letters, digits, '.', '-' and '+'."""
    cleaned = re.sub(r"[^A-Za-z0-9.+-]+", "-", name).strip("-.")
    return cleaned or "unnamed"


def check_name(name: str, what: str) -> None:
    """Refuse a name that cannot stand in a file name as it is, suggesting one that can."""
    if safe_name(name) != name:
        raise ClipSearchError(f"{what} name {name!r} may only hold letters, digits, '.', '-' and '+' (it is part "
                              f"of file names); try {safe_name(name)!r}")


def _entry(walk: DatasetWalk, entry: Entry, partition: str, class_name: str) -> ImageFile:
    stat = entry.path.stat()
    return ImageFile(walk.relative(entry.path), partition, class_name, stat.st_size, stat.st_mtime_ns,
                     walk.target(entry))


def parse_words(text: str) -> dict[str, str]:
    """tiny-imagenet's words.txt: each line maps a wnid to synonyms; the first synonym is the name."""
    names = {}
    for line in text.splitlines():
        wnid, _, synonyms = line.partition("\t")
        if wnid.strip():
            names[wnid.strip()] = synonyms.split(",")[0].strip()
    return names


def read_words(root: Path) -> dict[str, str]:
    """The class names of a tiny-imagenet folder (empty when it has no words.txt)."""
    words = root / "words.txt"
    return parse_words(words.read_text(errors="replace")) if words.is_file() else {}


def detect_layout(root: Path) -> str:
    if (root / "train").is_dir() and ((root / "wnids.txt").is_file() or (root / "words.txt").is_file()):
        return "tiny-imagenet"
    children = [c for c in root.iterdir() if not c.name.startswith(".")]
    media = image_extensions() | VIDEO_EXTENSIONS
    if any(c.is_dir() for c in children) and not any(c.is_file() and c.suffix.lower() in media for c in children):
        return "folders"
    return "flat"


def _tiny_imagenet(walk: DatasetWalk) -> list[ImageFile]:
    names = read_words(walk.root)
    files: list[ImageFile] = []
    for class_dir in (e for e in walk.entries(walk.root / "train") if e.is_dir):
        wnid = class_dir.path.name
        images = class_dir.path / "images"
        found = walk.files(images) if images.is_dir() else walk.files(class_dir.path, class_dir.real)
        files.extend(_entry(walk, e, safe_name(wnid), names.get(wnid) or wnid) for e in found)
    return files


def _folders(walk: DatasetWalk) -> list[ImageFile]:
    files: list[ImageFile] = []
    taken: dict[str, str] = {}
    entries = walk.entries(walk.root)
    for class_dir in (e for e in entries if e.is_dir):
        partition = safe_name(class_dir.path.name)
        if partition in taken:
            partition = f"{partition}-{len(taken)}"
        taken[partition] = class_dir.path.name
        files.extend(_entry(walk, e, partition, class_dir.path.name)
                     for e in walk.files(class_dir.path, class_dir.real))
    files.extend(_entry(walk, e, "unsorted", "") for e in entries if not e.is_dir)
    return files


def _flat(walk: DatasetWalk, partition_size: int, known: Mapping[str, str]) -> list[ImageFile]:
    """Chunks of `partition_size`; files already in the catalog keep their partition, new ones fill up."""
    counts: dict[str, int] = {}
    for held in known.values():
        counts[held] = counts.get(held, 0) + 1
    files = []
    for entry in walk.files(walk.root):
        rel = walk.relative(entry.path)
        partition = known.get(rel)
        if partition is None:
            partition = next((p for p in sorted(counts) if counts[p] < partition_size), None)
            if partition is None:
                partition = f"part{len(counts):05d}"
            counts[partition] = counts.get(partition, 0) + 1
        files.append(_entry(walk, entry, partition, ""))
    return files


def scan_dataset(root: Path, layout: str = "auto", partition_size: int = 1000,
                 known_partitions: Mapping[str, str] | None = None, follow_links: bool = False) -> DatasetScan:
    """The layout (detected when 'auto') and every candidate file, each assigned to its partition.

    `known_partitions` maps paths already indexed to their partition, so flat datasets stay stable. A symbolic
    link is followed only where it leads inside `root`, unless `follow_links` (lib/data/dataset_files.py).
    """
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {root} does not exist or is not a folder")
    layout = detect_layout(root) if layout == "auto" else layout
    walk = DatasetWalk(root, follow_links)
    if layout == "tiny-imagenet":
        files = _tiny_imagenet(walk)
    elif layout == "folders":
        files = _folders(walk)
    elif layout == "flat":
        files = _flat(walk, partition_size, known_partitions or {})
    else:
        raise ValueError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)} or auto")
    return DatasetScan(layout, files, walk.refused)
