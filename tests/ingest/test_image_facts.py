"""What a build records of each image besides its vector: capture time (EXIF or mtime), camera, orientation,
folder, and the words of its names and captions; older catalogs get them without re-encoding."""
import os

import numpy as np
import pytest
from PIL import Image

from lib.store.catalog import CATALOG_NAME, Catalog
from lib.store.index_files import read_index, vectors_of
from tests.ingest.test_image_index import build, settings_for

MTIME_NS = 1_500_000_000 * 10**9  # 2017-07-14 02:40:00 UTC
BEACH, EDITED, PLAIN = "trips/IMG_2041-holidayBeach.jpg", "trips/2020/edited.jpg", "home/plain.png"


def photo(path, colour, tags=None, size=(40, 30)):
    exif = Image.Exif()
    for tag, value in (tags or {}).items():
        (exif.get_ifd(0x8769) if tag == 36867 else exif)[tag] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, exif=exif)


@pytest.fixture
def photos(tmp_path):
    root = tmp_path / "photos"
    photo(root / BEACH, "red", {36867: "2019:07:14 15:16:17", 306: "2021:01:01 00:00:00", 271: "Canon",
                               272: "Canon EOS 5D", 274: 6})
    photo(root / EDITED, "blue", {306: "2020:01:01 00:00:00", 271: "Apple", 272: "iPhone 12"})
    photo(root / PLAIN, "green")
    os.utime(root / PLAIN, ns=(MTIME_NS, MTIME_NS))
    (root / "home" / "plain.txt").write_text("my cat on the sofa")
    (root / "captions.csv").write_text(f"image,caption\n{BEACH},sunset at the sea\n{EDITED},a blue square\n")
    return root


def rows(settings):
    return {r.path: r for r in Catalog(settings.indexes_dir / CATALOG_NAME).images("test")}


def found(settings, text):
    catalog = Catalog(settings.indexes_dir / CATALOG_NAME, readonly=True)
    paths = {r.id: r.path for r in catalog.images("test")}
    return [paths[i] for i, _ in catalog.text_search("test", text, 10)]


def test_a_build_records_capture_facts_and_folders(tmp_path, photos, demo_encoder):
    settings = settings_for(tmp_path / "ws", photos)
    report = build(settings, demo_encoder)
    assert report.added == 3 and not report.skipped  # captions.csv and the sidecar are neither images nor skipped
    got = rows(settings)
    beach, edited, plain = got[BEACH], got[EDITED], got[PLAIN]
    assert (beach.captured_ns, beach.captured_from) == (1563117377 * 10**9, "exif")  # DateTimeOriginal first
    assert (beach.camera, beach.orientation, beach.width, beach.height) == ("Canon EOS 5D", 6, 30, 40)
    assert (edited.captured_ns, edited.captured_from, edited.camera) == (1577836800 * 10**9, "exif", "Apple iPhone 12")
    assert (plain.captured_ns, plain.captured_from, plain.camera, plain.orientation) == (MTIME_NS, "mtime", "", 1)
    assert (beach.folder, edited.folder, plain.folder) == ("trips", "trips/2020", "home")
    catalog = Catalog(settings.indexes_dir / CATALOG_NAME)
    in_2019 = catalog.filtered_ids("test", date_from_ns=1546300800 * 10**9, date_to_ns=1577836800 * 10**9)
    assert sorted(in_2019.tolist()) == sorted([beach.id, edited.id])
    assert catalog.filtered_ids("test", folder="trips/").tolist() == sorted([beach.id, edited.id])


def test_names_folders_and_captions_are_found_by_text(tmp_path, photos, demo_encoder):
    settings = settings_for(tmp_path / "ws", photos)
    build(settings, demo_encoder)
    assert found(settings, "holiday") == [BEACH] and found(settings, "beach 2041") == [BEACH]
    assert found(settings, "sunset") == [BEACH] and found(settings, "square") == [EDITED]  # captions.csv
    assert found(settings, "sofa") == [PLAIN] and found(settings, "HOME") == [PLAIN]  # sidecar, folder
    assert sorted(found(settings, "trips")) == sorted([BEACH, EDITED])


def test_changed_captions_are_picked_up_and_removed_images_leave(tmp_path, photos, demo_encoder):
    settings = settings_for(tmp_path / "ws", photos)
    build(settings, demo_encoder)
    (photos / "captions.csv").write_text(f"image,caption\n{BEACH},a stormy night\n")
    (photos / "home" / "plain.txt").write_text("a dog in the garden")
    report = build(settings, demo_encoder)
    assert (report.encoded, report.unchanged, report.texts) == (0, 3, 3)
    assert found(settings, "sunset") == [] and found(settings, "stormy") == [BEACH]
    assert found(settings, "square") == [] and found(settings, "sofa") == [] and found(settings, "garden") == [PLAIN]
    assert build(settings, demo_encoder).texts == 0  # nothing changed: nothing written, no sidecar read
    (photos / BEACH).unlink()
    assert build(settings, demo_encoder).removed == 1
    assert found(settings, "stormy") == [] and found(settings, "holiday") == []
    assert len(Catalog(settings.indexes_dir / CATALOG_NAME).image_text_state("test")) == 2


def vectors(settings):
    catalog = Catalog(settings.indexes_dir / CATALOG_NAME)
    pairs = [vectors_of(read_index(settings.indexes_dir / p.index_file)) for p in catalog.partitions("test")]
    return {int(i): v for ids, vs in pairs for i, v in zip(ids, vs, strict=True)}


@pytest.mark.parametrize("also_unhashed", [False, True], ids=["header-only", "with-signatures"])
def test_an_older_catalog_gets_the_facts_and_text_on_the_next_build_without_encoding(tmp_path, photos, demo_encoder,
                                                                                     also_unhashed):
    settings = settings_for(tmp_path / "ws", photos)
    build(settings, demo_encoder)
    before, vectors_before = rows(settings), vectors(settings)
    catalog = Catalog(settings.indexes_dir / CATALOG_NAME)
    with catalog.transaction() as db:  # the catalog as the build before this one left it
        db.execute("DROP INDEX images_captured")
        db.execute("DROP INDEX images_folder")
        db.execute("DROP TABLE image_text")
        for column in ("captured_ns", "captured_from", "camera", "orientation", "folder") + (
                ("perceptual_hash",) if also_unhashed else ()):
            db.execute(f"ALTER TABLE images DROP COLUMN {column}")
    catalog.close()
    report = build(settings, demo_encoder)
    assert (report.encoded, report.unchanged, report.dated, report.texts) == (0, 3, 3, 3)
    assert report.hashed == (3 if also_unhashed else 0)
    assert "3 unchanged images given capture dates" in report.summary()
    assert rows(settings) == before and vectors(settings).keys() == vectors_before.keys()
    for image_id, vector in vectors(settings).items():
        np.testing.assert_array_equal(vector, vectors_before[image_id])
    assert found(settings, "sunset") == [BEACH]
    again = build(settings, demo_encoder)
    assert (again.dated, again.hashed, again.texts) == (0, 0, 0)


def test_names_that_are_not_utf8_get_folders_and_words(tmp_path, demo_encoder):
    root = tmp_path / "photos"
    folder = os.fsdecode(b"f\xeate")
    photo(root / "trips" / folder / "DSC0042.jpg", "red")
    settings = settings_for(tmp_path / "ws", root)
    assert build(settings, demo_encoder).added == 1
    (row,) = rows(settings).values()
    assert row.folder == f"trips/{folder}" and found(settings, "dsc") == [row.path] == found(settings, "trips")
    catalog = Catalog(settings.indexes_dir / CATALOG_NAME)
    assert catalog.filtered_ids("test", folder=f"trips/{folder}").tolist() == [row.id]
    assert catalog.filtered_ids("test", folder="trips").tolist() == [row.id]
