"""Durable files: staged writes made final by an atomic rename, SHA-256 of files, and the build lock."""
from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from lib.errors import ClipSearchError, DiskFullError

log = logging.getLogger(__name__)

TMP_SUFFIX = ".tmp"


def sha256_file(path: Path) -> str:
    return sha256_files([path])


_VERIFIED: dict[tuple, str] = {}


def sha256_known(path: Path) -> str:
    """The SHA-256 of a file, hashed once per process for as long as the file stays the same inode, size,
    mtime and ctime (ctime cannot be set back, so any change of content is seen).

    Index files are checked on every load, and a server reloads its index set after each build: at ten
    million vectors that is ~15 GB, 9 s of hashing per load without this.
    """
    stat = path.stat()
    key = (str(path), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    if key not in _VERIFIED:
        _VERIFIED[key] = sha256_file(path)
    return _VERIFIED[key]


def sha256_files(paths: Iterable[Path]) -> str:
    """The SHA-256 of the files' bytes, read in order (one digest for a sharded checkpoint)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()


def fsync_dir(folder: Path) -> None:
    fsync_file(folder)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def out_of_space(err: BaseException) -> bool:
    """Whether an error says the filesystem is full: ENOSPC (or a quota: EDQUOT), or SQLite's SQLITE_FULL."""
    if isinstance(err, OSError):
        return err.errno in (errno.ENOSPC, errno.EDQUOT)
    return isinstance(err, sqlite3.Error) and getattr(err, "sqlite_errorname", "") == "SQLITE_FULL"


@contextmanager
def room_on_disk(folder: Path, kept: Callable[[], str]) -> Iterator[None]:
    """A full disk (ENOSPC, SQLite's 'database or disk is full') as one line, DiskFullError, saying where and
    what was kept (`kept()`, read when it happens); any other error goes on as it was."""
    try:
        yield
    except (OSError, sqlite3.Error) as err:
        if not out_of_space(err):
            raise
        filename = getattr(err, "filename", None)  # set when the failing call had a path; a write has not
        where = Path(filename).parent if filename else folder
        raise DiskFullError(f"no space left on {where}: {kept()}, free space and run again") from None


def write_staged(data: bytes | memoryview | np.ndarray, path: Path) -> tuple[Path, str]:
    """Write `path`.tmp completely and durably; return it and its SHA-256. `publish` then makes it final.

    A write that fails (a full disk) removes its partial file, so that it holds no space."""
    staged = path.with_name(path.name + TMP_SUFFIX)
    view = memoryview(data)  # type: ignore[arg-type]  # an ndarray is a buffer; numpy's stubs do not say so
    try:
        with open(staged, "wb") as handle:
            handle.write(view)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    return staged, hashlib.sha256(view).hexdigest()


def publish(staged: Path) -> Path:
    """Atomically replace the final file with the staged one (rename), and make the rename durable."""
    final = staged.with_name(staged.name[: -len(TMP_SUFFIX)])
    os.replace(staged, final)
    fsync_dir(final.parent)
    return final


def write_atomic(data: bytes | np.ndarray, path: Path) -> Path:
    """Write a whole file so that readers see the old one or the new one, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return publish(write_staged(data, path)[0])


def settle(path: Path, expected_sha256: str, discard: bool = False) -> None:
    """Finish an interrupted publish: if the staged file is the one the catalog recorded, move it in.

    With `discard` (only for a builder that holds the build lock), a staged file that matches nothing,
    left by a build that stopped before its catalog commit, is deleted. Readers never delete: the
    staged file may belong to a build in progress.
    """
    staged = path.with_name(path.name + TMP_SUFFIX)
    if not staged.exists():
        return
    if sha256_file(staged) == expected_sha256:
        if not (path.exists() and sha256_file(path) == expected_sha256):
            publish(staged)
            log.info("finished the interrupted write of %s", path.name)
    elif discard:
        staged.unlink(missing_ok=True)


@contextmanager
def build_lock(folder: Path, name: str, wait: bool = False) -> Iterator[None]:
    """One build per dataset or vocabulary at a time; a second one stops with a message instead of racing
    (or, with `wait`, waits for the first: for short work such as copying the catalog).

    A POSIX record lock (lockf), not flock: it belongs to this process only, so the DataLoader workers
    it forks do not inherit it, and a build killed with SIGKILL frees it at once even while an
    orphaned worker lingers for a few seconds.
    """
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f".build-{name}.lock", "w") as handle:
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as err:
            if err.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            raise ClipSearchError(f"another build of {name!r} is running; wait for it to finish") from None
        yield
