"""A build that runs out of disk ends in one line with status 2, keeps what it committed, and completes once freed."""
import errno
import gc
import re

import pytest

import build_image_index
import lib.model.loading
import lib.store.index_files as index_files
from tests.helpers import nearly_full_tmpfs
from tests.ingest.test_catalog_damage import CLASSES, PER_CLASS, assert_all_searchable, photos  # noqa: F401
from tests.ingest.test_image_index import settings_for

LINE = re.compile(r"build_image_index: error: no space left on (\S+): (\d+) partitions committed, "
                  r"free space and run again")


def run_cli(workspace, root, capsys) -> tuple[int, str, str]:
    """build_image_index.py as a user runs it: its exit status and what it wrote on stdout and stderr."""
    try:
        build_image_index.main(["test", str(root), "--workspace", str(workspace), "--no-progress",
                                "--num-workers", "0", "--calibration-images", "0"])
        status = 0
    except SystemExit as exit_:
        status = exit_.code
    gc.collect()
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def cli_encoder(demo_encoder, monkeypatch):
    monkeypatch.setattr(lib.model.loading, "encoder_for", lambda settings: demo_encoder)
    return demo_encoder


def assert_stopped_in_one_line(status, err, settings) -> int:
    """The one line and status 2; the partitions it says were committed are in the catalog, whole."""
    assert status == 2, err
    (line,) = [line for line in err.strip().splitlines() if line.startswith("build_image_index:")]
    assert "Traceback" not in err
    found = LINE.fullmatch(line)
    assert found, line
    committed = int(found.group(2))
    assert 0 <= committed < CLASSES
    assert not list(settings.indexes_dir.glob("*.tmp"))  # no staged file holds space
    return committed


def test_a_build_into_a_full_workspace_stops_in_one_line_and_completes_once_freed(tmp_path, photos,  # noqa: F811
                                                                                    cli_encoder, capsys):
    workspace = tmp_path / "ws"
    with nearly_full_tmpfs(workspace, free=170_000) as disk:  # room for the catalog and a partition or two
        settings = settings_for(workspace, photos)
        status, _, err = run_cli(workspace, photos, capsys)
        committed = assert_stopped_in_one_line(status, err, settings)
        assert LINE.search(err).group(1) == str(settings.indexes_dir)
        (disk / "filler").unlink()
        status, out, err = run_cli(workspace, photos, capsys)
        assert status == 0, err
        # what was committed is kept: only the rest is encoded
        assert f"{(CLASSES - committed) * PER_CLASS} added, 0 changed, 0 removed, {committed * PER_CLASS} unchanged" \
            in out
        assert_all_searchable(settings, cli_encoder, CLASSES * PER_CLASS)


def test_a_simulated_full_disk_stops_the_same_way(tmp_path, photos, cli_encoder, monkeypatch, capsys):  # noqa: F811
    """Where no tmpfs can be mounted: the third index file written fails with ENOSPC."""
    real_write, calls = index_files.write_staged, []

    def full_on_third(data, path):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(data, path)

    monkeypatch.setattr(index_files, "write_staged", full_on_third)
    settings = settings_for(tmp_path / "ws", photos)
    status, _, err = run_cli(settings.workspace, photos, capsys)
    assert assert_stopped_in_one_line(status, err, settings) == 2
    monkeypatch.setattr(index_files, "write_staged", real_write)
    status, out, err = run_cli(settings.workspace, photos, capsys)
    assert status == 0 and f"{(CLASSES - 2) * PER_CLASS} added, 0 changed, 0 removed, {2 * PER_CLASS} unchanged" \
        in out, err
    assert_all_searchable(settings, cli_encoder, CLASSES * PER_CLASS)


def test_a_disk_full_while_text_is_stored_keeps_the_index_and_reads_the_rest_next_time(tmp_path, photos,  # noqa: F811
                                                                                        cli_encoder, monkeypatch,
                                                                                        capsys):
    import sqlite3

    from lib.store.catalog import Catalog

    real_put, calls = Catalog.put_words, []

    def full(self, db, dataset, results):
        calls.append(len(results))
        full = sqlite3.OperationalError("database or disk is full")
        full.sqlite_errorname = "SQLITE_FULL"  # as SQLite sets it
        raise full

    monkeypatch.setattr(Catalog, "put_words", full)
    settings = settings_for(tmp_path / "ws", photos)
    try:
        build_image_index.main(["test", str(photos), "--workspace", str(settings.workspace), "--no-progress",
                                "--num-workers", "0", "--calibration-images", "0", "--ocr", "--ocr-workers", "1"])
        status = 0
    except SystemExit as exit_:
        status = exit_.code
    err = capsys.readouterr().err
    assert status == 2 and calls, err
    (line,) = [line for line in err.strip().splitlines() if line.startswith("build_image_index:")]
    assert LINE.fullmatch(line) and "Traceback" not in err
    catalog = Catalog.in_folder(settings.indexes_dir, readonly=True)
    assert len(catalog.images("test")) == CLASSES * PER_CLASS  # every vector was committed before the text
    assert catalog.words_counts("test")["read"] == 0
    monkeypatch.setattr(Catalog, "put_words", real_put)
    status, out, err = run_cli(settings.workspace, photos, capsys)  # no --ocr: the dataset's choice was recorded
    assert status == 0, err
    assert Catalog.in_folder(settings.indexes_dir, readonly=True).words_counts("test")["read"] == CLASSES * PER_CLASS
    assert f"text read in {CLASSES * PER_CLASS} images" in out and "0 added" in out
    assert_all_searchable(settings, cli_encoder, CLASSES * PER_CLASS)
