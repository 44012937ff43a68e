"""Small file makers shared by the tests, and a nearly full filesystem."""
import io
import os
import shutil
import struct
import subprocess
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from PIL import Image


def encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def bomb_png(width: int, height: int) -> bytes:
    """A valid tiny PNG whose header claims width x height pixels (a decompression bomb's header)."""
    png = encoded(Image.new("L", (1, 1)), "PNG")
    ihdr = b"IHDR" + struct.pack(">II", width, height) + png[24:29]
    return png[:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + png[33:]


def share_model_cache(workspace: Path, model_cache: Path) -> Path:
    """`workspace` with its converted models (cache/openvino) linked to the session's, so that a build, a server
    or a Ray actor there reads what the session has converted instead of converting again; returns it."""
    (model_cache / "openvino").mkdir(parents=True, exist_ok=True)
    (workspace / "cache").mkdir(parents=True, exist_ok=True)
    link = workspace / "cache" / "openvino"
    if not link.exists():
        link.symlink_to(model_cache / "openvino", target_is_directory=True)
    return workspace


@contextmanager
def nearly_full_tmpfs(folder: Path, free: int, size: str = "4m") -> Iterator[Path]:
    """A small tmpfs mounted on `folder`, filled by `folder/filler` but for about `free` bytes (delete the filler to
    free the space); unmounted afterwards. Skips the test where mounting is not allowed (not root, a container)."""
    folder.mkdir(parents=True, exist_ok=True)
    mount, umount = shutil.which("mount"), shutil.which("umount")
    if os.geteuid() != 0 or not mount or not umount or subprocess.run(
            [mount, "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root); the simulated full disk still runs")
    try:
        stat = os.statvfs(folder)
        (folder / "filler").write_bytes(bytes(max(0, stat.f_bavail * stat.f_frsize - free)))
        yield folder
    finally:
        subprocess.run([umount, "-l", str(folder)], check=True)  # lazy: a connection of a failed build may linger


STORES = ["files", "postgresql"]  # the params of a fixture whose tests run against both stores (issue 29)


def on_store(request, settings):
    """The settings for the store a fixture parametrized with STORES asks for."""
    return settings if request.param == "files" else in_store_database(settings, request.getfixturevalue("postgres"))


def in_store_database(settings, postgres):
    """The settings with `store` a new database of the packaged server (lib/ingest/packaged_postgres.py), into
    which the datasets of their index folder are copied, as a build with that store does."""
    import dataclasses

    from lib.ingest.store_copy import copy_dataset
    from lib.store.catalog import Catalog

    stored = dataclasses.replace(settings, store=postgres.database())
    catalog = Catalog.in_folder(settings.indexes_dir, readonly=True)
    try:
        names = [record.name for record in catalog.datasets()]
    finally:
        catalog.close()
    for name in names:
        copy_dataset(stored, name)
    return stored
