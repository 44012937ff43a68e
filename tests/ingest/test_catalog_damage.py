"""A damaged catalog under the builder: it restores the good copy, or moves the file aside and builds anew."""
import gc
import shutil

import pytest

from lib.serve.index_set import load_index_set
from lib.store.catalog import CATALOG_NAME
from lib.store.catalog_copy import good_copy
from tests.ingest.test_image_index import assert_consistent, build, save, settings_for
from tests.store.test_catalog_copy import overwrite_start, truncate

CLASSES, PER_CLASS = 4, 3


@pytest.fixture
def photos(tmp_path):
    root = tmp_path / "photos"
    for c in range(CLASSES):
        for i in range(PER_CLASS):
            save(root / f"class{c}" / f"{i}.png", (60 * c, 100 * i, 90))
    return root


def closed_catalog(settings):
    """The catalog's path, once no connection holds it (a damaged file is a closed one: the build has ended)."""
    gc.collect()
    path = settings.indexes_dir / CATALOG_NAME
    assert not path.with_name(CATALOG_NAME + "-wal").exists()
    return path


def assert_all_searchable(settings, encoder, files: int):
    """Every image file of the folder has its row and its vector, and a search with that vector finds it first."""
    catalog = assert_consistent(settings)
    rows = catalog.images("test")
    assert len(rows) == files
    index_set = load_index_set(settings.indexes_dir, settings.indexes_text_dir, encoder.identity)
    assert not index_set.left_out
    dataset = index_set.datasets["test"]
    assert sorted(dataset.order.ids) == sorted(r.id for r in rows)
    for row in rows:
        scores, ids = dataset.search(dataset.vector(row.id), 1)
        assert scores[0][0] > 0.999 and catalog.image(int(ids[0][0])).sha256 == row.sha256


@pytest.mark.parametrize("damage", [truncate, overwrite_start], ids=lambda f: f.__name__)
def test_with_a_good_copy_nothing_it_knew_is_encoded_again(tmp_path, photos, demo_encoder, damage, caplog):
    settings = settings_for(tmp_path / "ws", photos)
    build(settings, demo_encoder)
    older_copy = tmp_path / "older.good"
    shutil.copy(good_copy(settings.indexes_dir), older_copy)
    save(photos / "class0" / "new.png", "white")  # committed after the copy the catalog will come back to
    save(photos / "class4" / "0.png", "black")
    build(settings, demo_encoder)
    shutil.copy(older_copy, good_copy(settings.indexes_dir))
    damage(closed_catalog(settings))
    report = build(settings, demo_encoder)
    (line,) = [r.message for r in caplog.records if "damaged" in r.message]
    assert "restored the good copy" in line and list(settings.indexes_dir.glob("catalog.sqlite.damaged-*"))
    # class0 (changed after the copy) is encoded whole again, class4 is new to the copy; the rest it knew
    assert report.encoded == PER_CLASS + 1 + 1 and report.unchanged == (CLASSES - 1) * PER_CLASS
    assert_all_searchable(settings, demo_encoder, CLASSES * PER_CLASS + 2)


@pytest.mark.parametrize("damage", [truncate, overwrite_start], ids=lambda f: f.__name__)
def test_without_a_copy_the_damaged_file_is_moved_aside_and_everything_encoded(tmp_path, photos, demo_encoder,
                                                                                 damage, caplog):
    settings = settings_for(tmp_path / "ws", photos)
    build(settings, demo_encoder)
    good_copy(settings.indexes_dir).unlink()
    path = closed_catalog(settings)
    damage(path)
    damaged = path.read_bytes()
    report = build(settings, demo_encoder, rebuild=damage is truncate)  # --rebuild or not, it needs no hand
    (line,) = [r.message for r in caplog.records if "damaged" in r.message]
    assert "started a new catalog" in line
    (aside,) = settings.indexes_dir.glob("catalog.sqlite.damaged-*")
    assert aside.read_bytes() == damaged
    assert report.encoded == CLASSES * PER_CLASS and good_copy(settings.indexes_dir).is_file()
    assert_all_searchable(settings, demo_encoder, CLASSES * PER_CLASS)
