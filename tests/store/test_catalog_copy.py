"""The catalog's good copy: checked, kept atomically, restored over a damaged catalog; a damaged file is kept aside."""
import gc
import os
import sqlite3
from pathlib import Path

import pytest

from lib.errors import CatalogDamagedError
from lib.store.catalog import CATALOG_NAME, Catalog, DatasetRecord, ImageRecord, PartitionRecord
from lib.store.catalog_check import check_catalog
from lib.store.catalog_copy import good_copy, keep_good_copy, repair_catalog
from lib.store.files import out_of_space
from lib.store.identity import ModelIdentity


def fill(folder: Path, images: int = 300) -> Path:
    """A closed catalog of one dataset with `images` rows (big enough that damage halfway hits real pages)."""
    catalog = Catalog.in_folder(folder)
    with catalog.transaction() as db:
        catalog.put_dataset(db, DatasetRecord("d", folder, "flat", "flat", ModelIdentity("demo", "0" * 64, 128)))
        rows = [ImageRecord(i, "d", "p", f"image_{i:05d}.jpg", "", 64, 64, 1000 + i, i, f"{i:064x}")
                for i in range(1, images + 1)]
        catalog.apply_partition(db, PartitionRecord("d", "p", "image_d_p_128.index", "f" * 64, images), (), rows)
    catalog.close()
    gc.collect()
    assert not (folder / (CATALOG_NAME + "-wal")).exists(), "a connection is still open"
    return folder / CATALOG_NAME


def truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def overwrite_start(path: Path) -> None:
    with open(path, "r+b") as handle:
        handle.write(b"not a catalog " * 40)


def overwrite_middle(path: Path) -> None:
    with open(path, "r+b") as handle:
        handle.seek(path.stat().st_size // 2)
        handle.write(b"\xff" * 8192)  # no page type has this header


def empty(path: Path) -> None:
    os.truncate(path, 0)


DAMAGE = [truncate, overwrite_start, overwrite_middle, empty]


def paths_in(catalog: Path) -> list[str]:
    reader = Catalog(catalog, readonly=True)
    try:
        return [r.path for r in reader.images("d")]
    finally:
        reader.close()


@pytest.mark.parametrize("damage", DAMAGE, ids=lambda f: f.__name__)
def test_damage_is_found_and_named(tmp_path, damage):
    path = fill(tmp_path)
    check_catalog(path)
    damage(path)
    with pytest.raises(CatalogDamagedError, match=f"catalog {path} is damaged"):
        check_catalog(path)


def test_the_good_copy_is_a_checked_single_file_that_replaces_the_last(tmp_path):
    path = fill(tmp_path, images=10)
    copy = keep_good_copy(tmp_path)
    assert copy == good_copy(tmp_path) and copy.name == "catalog.sqlite.good"
    assert paths_in(copy) == paths_in(path)
    assert [p.name for p in tmp_path.glob("catalog.sqlite.*")] == ["catalog.sqlite.good"]  # no WAL, nothing staged
    truncate(path)
    with pytest.raises(CatalogDamagedError):
        keep_good_copy(tmp_path)
    assert paths_in(copy) == [f"image_{i:05d}.jpg" for i in range(1, 11)]  # a damaged catalog never replaces it


@pytest.mark.parametrize("damage", DAMAGE, ids=lambda f: f.__name__)
@pytest.mark.parametrize("rebuild", [False, True], ids=["server", "builder"])
def test_a_damaged_catalog_is_moved_aside_and_the_copy_restored(tmp_path, damage, rebuild):
    path = fill(tmp_path)
    keep_good_copy(tmp_path)
    expected = paths_in(path)
    damage(path)
    damaged = path.read_bytes()
    note = repair_catalog(tmp_path, rebuild)
    assert note.startswith(f"catalog {path} is damaged (") and "restored the good copy" in note
    assert len(note.splitlines()) == 1
    check_catalog(path)
    assert paths_in(path) == expected
    (aside,) = tmp_path.glob("catalog.sqlite.damaged-*")
    assert aside.read_bytes() == damaged and aside.name in note
    assert repair_catalog(tmp_path, rebuild) is None  # sound now: nothing to do


def test_without_a_copy_a_server_refuses_and_a_builder_starts_anew(tmp_path):
    path = fill(tmp_path)
    truncate(path)
    damaged = path.read_bytes()
    with pytest.raises(CatalogDamagedError) as refusal:
        repair_catalog(tmp_path, rebuild=False)
    message = str(refusal.value)
    assert len(message.splitlines()) == 1 and str(path) in message
    assert "no good copy" in message and "build_image_index.py NAME PATH" in message
    assert path.read_bytes() == damaged  # the server leaves it where it is
    note = repair_catalog(tmp_path, rebuild=True)
    assert "started a new catalog" in note and not path.exists()
    (aside,) = tmp_path.glob("catalog.sqlite.damaged-*")
    assert aside.read_bytes() == damaged


def test_a_damaged_good_copy_is_not_restored(tmp_path):
    path = fill(tmp_path)
    keep_good_copy(tmp_path)
    truncate(good_copy(tmp_path))
    empty(path)
    with pytest.raises(CatalogDamagedError, match="no good copy"):
        repair_catalog(tmp_path, rebuild=False)


def test_sqlite_full_is_seen_as_out_of_space(tmp_path):
    path = fill(tmp_path, images=1)
    db = sqlite3.connect(path)
    db.execute("PRAGMA max_page_count = 20")  # SQLite's own 'database or disk is full', as on a full disk
    with pytest.raises(sqlite3.OperationalError) as full:
        db.execute("CREATE TABLE big (x)")
        db.executemany("INSERT INTO big VALUES (?)", [(os.urandom(1000),) for _ in range(200)])
        db.commit()
    db.close()
    assert out_of_space(full.value) and out_of_space(OSError(28, "No space left on device"))
    assert not out_of_space(sqlite3.OperationalError("database is locked")) and not out_of_space(OSError(13, "x"))
