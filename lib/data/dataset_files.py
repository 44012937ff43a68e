"""Where a dataset's files may be: inside its folder, when a build walks it and when the server opens one.

A build (`DatasetWalk`) follows a symbolic link, to a file or a folder, only where it leads inside the
dataset's folder; one that leads out is left out and reported, unless `follow_links` is given, and then the
catalog records where it led (`ImageRecord.link_target`). The server opens an indexed file only through
`open_indexed`: the path is resolved and must lie inside the resolved folder (or be the recorded target),
then it is opened one component at a time relative to its parent with O_NOFOLLOW, so that a link swapped in
between the check and the open fails the open instead of leading out; and the open file must still be the
regular file the catalog recorded (its size and modification time).
"""
from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import BinaryIO, NamedTuple

from lib.errors import NotFoundError
from lib.store.names import shown
from lib.store.records import ImageRecord

log = logging.getLogger(__name__)

FOLLOW_HINT = "--follow-links indexes it"


class Entry(NamedTuple):
    """A file or folder found below a dataset's folder, and its resolved path."""

    path: Path
    real: Path
    is_dir: bool


class DatasetWalk:
    """The files below a dataset's folder, in name order, hidden ones left out; `refused` maps what was left
    out for where it leads (path relative to the folder, with '/') to why."""

    def __init__(self, root: Path, follow_links: bool = False) -> None:
        self.root = root
        self.real_root = Path(os.path.realpath(root))
        self.follow_links = follow_links
        self.refused: dict[str, str] = {}

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def target(self, entry: Entry) -> str:
        """'' for a file inside the folder; the resolved path of one a followed link leads to outside it."""
        return "" if entry.real.is_relative_to(self.real_root) else str(entry.real)

    def _refuse(self, path: Path, why: str) -> None:
        self.refused[self.relative(path)] = why

    def _allowed(self, path: Path, real: Path) -> bool:
        if real.is_relative_to(self.real_root) or self.follow_links:
            return True
        self._refuse(path, f"a symbolic link to {shown(str(real))}, outside the dataset's folder ({FOLLOW_HINT})")
        return False

    def entries(self, folder: Path, real: Path | None = None, above: frozenset[Path] = frozenset()) -> list[Entry]:
        """The folder's own files and folders; `real` is its resolved path (resolved and checked when None),
        `above` the resolved folders it is in, so that a link back to one of them is not walked round and round."""
        if real is None:
            real = Path(os.path.realpath(folder))
            if folder.is_symlink() and not self._allowed(folder, real):
                return []
        try:
            with os.scandir(folder) as scan:
                items = sorted((item for item in scan if not item.name.startswith(".")), key=lambda item: item.name)
        except OSError as err:
            self._refuse(folder, f"a folder that cannot be read: {err.strerror}")
            return []
        found = []
        for item in items:
            path = folder / item.name
            link = item.is_symlink()
            resolved = Path(os.path.realpath(path)) if link else real / item.name
            if link and not self._allowed(path, resolved):
                continue
            if item.is_dir():
                if resolved in above or resolved in (real, self.real_root):
                    self._refuse(path, "a symbolic link to a folder it is in")
                else:
                    found.append(Entry(path, resolved, True))
            elif item.is_file():
                found.append(Entry(path, resolved, False))
            else:
                self._refuse(path, "a symbolic link that leads nowhere" if link else "not a regular file")
        return found

    def files(self, folder: Path, real: Path | None = None, above: frozenset[Path] = frozenset()) -> list[Entry]:
        """Every file below the folder: its own first, then each subfolder's, in name order."""
        entries = self.entries(folder, real, above)
        above = above | {real or Path(os.path.realpath(folder))}
        found = [entry for entry in entries if not entry.is_dir]
        for entry in entries:
            if entry.is_dir:
                found += self.files(entry.path, entry.real, above)
        return found


def _open_beneath(base: str, relative: str) -> int:
    """A read-only descriptor of base/relative, no component of `relative` followed if it is a link."""
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    try:
        *folders, name = relative.split("/")
        for part in folders:
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = inner
        return os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)  # a FIFO must not block
    finally:
        os.close(fd)


def open_indexed(root: Path, record: ImageRecord, stamped: bool = True) -> BinaryIO:
    """The file of an indexed image, open for reading, if it is where it may be and (when `stamped`: the catalog
    holds the file's own size and mtime) still the file that was indexed; NotFoundError otherwise."""
    what = f"the file of image {record.id}"
    real_root, real = os.path.realpath(root), os.path.realpath(root / record.path)
    if record.link_target:
        allowed, base = real == record.link_target, "/"
    else:
        allowed, base = real.startswith(real_root.rstrip("/") + "/"), real_root
    if not allowed:
        log.warning("refused image %d: %s leads to %s, outside %s", record.id, shown(record.path), shown(real),
                    shown(real_root))
        raise NotFoundError(f"{what} now leads outside its dataset's folder, so it is not served; re-run the builder")
    try:
        fd = _open_beneath(base, os.path.relpath(real, base))
    except OSError:
        raise NotFoundError(f"{what} is gone from the dataset (or was just replaced); re-run the builder") from None
    found = os.fstat(fd)
    if not stat.S_ISREG(found.st_mode) or (stamped and (found.st_size, found.st_mtime_ns) != (record.bytes,
                                                                                           record.mtime_ns)):
        os.close(fd)
        raise NotFoundError(f"{what} is not the file that was indexed (its size or modification time changed); "
                            "re-run the builder")
    return os.fdopen(fd, "rb")
