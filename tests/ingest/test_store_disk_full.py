"""The store database's disk full mid-build: the files' build goes on, the copy stops in one line naming the
full disk, no partition is half copied, and a copy once the space is freed completes it (issue 29)."""
from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from lib.errors import StoreUnavailableError
from lib.ingest.store_copy import StoreWriter, copy_dataset
from tests.helpers import nearly_full_tmpfs
from tests.ingest.test_store_copy import catalog_versions, held_versions

pytestmark = pytest.mark.slow


@contextmanager
def on_tablespace(postgres, url: str, folder: Path) -> Iterator[None]:
    """The database's tables from now on in a tablespace on `folder` (WAL stays on the server's own disk: a full
    WAL disk stops the server, which is the database going away, tested in test_store_outage). The database
    and the tablespace are dropped at the end, before the folder goes (the server must not keep files there)."""
    folder.mkdir()
    os.chown(folder, postgres.folder.stat().st_uid, -1)
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(postgres.url(), autocommit=True) as connection:
        connection.execute(f"CREATE TABLESPACE full_{name} LOCATION '{folder}'")
        connection.execute(f"ALTER DATABASE {name} SET default_tablespace = full_{name}")
        try:
            yield
        finally:
            connection.execute(f"DROP DATABASE {name} WITH (FORCE)")
            connection.execute(f"DROP TABLESPACE full_{name}")


@pytest.fixture
def reachable_folder() -> Iterator[Path]:
    """A folder the server's own user (not root) can reach: /tmp/pytest-of-root is root's alone."""
    folder = Path(tempfile.mkdtemp(prefix="clipsearch-test-tablespace-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_a_full_database_disk_stops_the_copy_in_one_line_and_a_copy_once_freed_completes(
        ivf_workspace, postgres, reachable_folder, caplog):
    settings = dataclasses.replace(ivf_workspace, store=postgres.database())
    names = sorted(catalog_versions(settings, "mix"))
    with nearly_full_tmpfs(reachable_folder / "disk", free=1_500_000, size="64m") as disk:  # a partition or two
        disk.chmod(0o755)
        with on_tablespace(postgres, settings.store, disk / "space"):
            writer = StoreWriter(settings, "mix")
            try:
                for name in names:
                    writer.committed(name)  # no exception: the files' build goes on
                assert "falls behind" in caplog.text and "no space left" in caplog.text
                with pytest.raises(StoreUnavailableError) as stopped:
                    writer.finish()
            finally:
                writer.close()
            line = str(stopped.value)
            assert "\n" not in line and "has no space left" in line and "free space" in line, line
            held, recorded = held_versions(settings.store, "mix"), catalog_versions(settings, "mix")
            assert 0 < len(held) < len(names)
            assert all(held[name] == recorded[name] for name in held)  # each partition copied whole or not at all
            (disk / "filler").unlink()
            report = copy_dataset(settings, "mix")
            assert report.copied == len(names) - len(held)
            assert held_versions(settings.store, "mix") == recorded
