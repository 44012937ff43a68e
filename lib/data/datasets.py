"""Find the images of a dataset and split them into partitions, for each of the three layouts."""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from lib.data.images import register_formats
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


def _files_under(folder: Path) -> list[Path]:
    """Every regular file below `folder`, hidden files and folders left out, in a stable order."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(dirpath) / f for f in sorted(filenames) if not f.startswith("."))
    return found


def _entry(root: Path, path: Path, partition: str, class_name: str) -> ImageFile:
    stat = path.stat()
    return ImageFile(path.relative_to(root).as_posix(), partition, class_name, stat.st_size, stat.st_mtime_ns)


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
    if any(c.is_dir() for c in children) and not any(c.is_file() and c.suffix.lower() in image_extensions()
                                                     for c in children):
        return "folders"
    return "flat"


def _tiny_imagenet(root: Path) -> list[ImageFile]:
    names = read_words(root)
    files: list[ImageFile] = []
    for class_dir in sorted(p for p in (root / "train").iterdir() if p.is_dir()):
        wnid = class_dir.name
        images = class_dir / "images" if (class_dir / "images").is_dir() else class_dir
        files.extend(_entry(root, p, safe_name(wnid), names.get(wnid) or wnid) for p in _files_under(images))
    return files


def _folders(root: Path) -> list[ImageFile]:
    files: list[ImageFile] = []
    taken: dict[str, str] = {}
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        partition = safe_name(class_dir.name)
        if partition in taken:
            partition = f"{partition}-{len(taken)}"
        taken[partition] = class_dir.name
        files.extend(_entry(root, p, partition, class_dir.name) for p in _files_under(class_dir))
    loose = [p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")]
    files.extend(_entry(root, p, "unsorted", "") for p in sorted(loose))
    return files


def _flat(root: Path, partition_size: int, known: Mapping[str, str]) -> list[ImageFile]:
    """Chunks of `partition_size`; files already in the catalog keep their partition, new ones fill up."""
    paths = _files_under(root)
    counts: dict[str, int] = {}
    for held in known.values():
        counts[held] = counts.get(held, 0) + 1
    files = []
    for path in paths:
        rel = path.relative_to(root).as_posix()
        partition = known.get(rel)
        if partition is None:
            partition = next((p for p in sorted(counts) if counts[p] < partition_size), None)
            if partition is None:
                partition = f"part{len(counts):05d}"
            counts[partition] = counts.get(partition, 0) + 1
        files.append(_entry(root, path, partition, ""))
    return files


def scan_dataset(root: Path, layout: str = "auto", partition_size: int = 1000,
                 known_partitions: Mapping[str, str] | None = None) -> tuple[str, list[ImageFile]]:
    """The layout (detected when 'auto') and every candidate file, each assigned to its partition.

    `known_partitions` maps paths already indexed to their partition, so flat datasets stay stable.
    """
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {root} does not exist or is not a folder")
    layout = detect_layout(root) if layout == "auto" else layout
    if layout == "tiny-imagenet":
        return layout, _tiny_imagenet(root)
    if layout == "folders":
        return layout, _folders(root)
    if layout == "flat":
        return layout, _flat(root, partition_size, known_partitions or {})
    raise ValueError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)} or auto")
