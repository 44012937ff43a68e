"""build_image_index: layouts, incremental runs, crash recovery, bad files, model mixing."""
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import lib.store.index_files as index_files
from lib.errors import IndexMismatchError
from lib.ingest.image_index import build_image_index
from lib.model.loading import load_encoder
from lib.settings import load_settings
from lib.store.catalog import CATALOG_NAME, Catalog
from lib.store.index_files import read_index, vectors_of
from tests.helpers import bomb_png


def settings_for(workspace: Path, root: Path, **overrides):
    values = dict(workspace=str(workspace), dataset_name="test", dataset_path=str(root), num_workers=0,
                  batch_size=16)
    values.update(overrides)
    return load_settings(environ={}, overrides=values)


def build(settings, encoder, **kwargs):
    return build_image_index(settings, encoder, progress=False, **kwargs)


def assert_consistent(settings, dataset="test"):
    """Every partition's index file is the recorded one and holds exactly the catalog's ids."""
    catalog = Catalog(settings.indexes_dir / CATALOG_NAME)
    partitions = catalog.partitions(dataset)
    assert partitions
    for partition in partitions:
        path = settings.indexes_dir / partition.index_file
        ids, _ = vectors_of(read_index(path, partition.index_sha256))
        assert sorted(ids) == [r.id for r in catalog.images(dataset) if r.partition == partition.name]
        assert partition.count == len(ids)
    assert not list(settings.indexes_dir.glob("*.tmp"))
    return catalog


def save(path: Path, colour, size=(40, 40), fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, fmt)


@pytest.fixture
def folders_dataset(tmp_path):
    root = tmp_path / "photos"
    save(root / "cats" / "a.png", "red")
    save(root / "cats" / "sub" / "deeper" / "b.jpg", "orange")
    save(root / "dogs" / "c.jpg", "blue")
    save(root / "birds & bees" / "d.webp", "green")
    return root


def test_tiny_imagenet_layout(tmp_path, tiny_dataset, demo_encoder):
    root, images = tiny_dataset
    settings = settings_for(tmp_path, root, dataset_name="tiny")
    report = build(settings, demo_encoder)
    assert report.layout == "tiny-imagenet" and report.added == len(images) and not report.skipped
    catalog = assert_consistent(settings, "tiny")
    partitions = catalog.partitions("tiny")
    assert len(partitions) == 36 and partitions[0].index_file == f"image_tiny_n90000000_{demo_encoder.dim}.index"
    first = next(r for r in catalog.images("tiny") if r.partition == "n90000000")
    assert first.class_name == "red circle" and first.path.startswith("train/n90000000/images/")
    assert (first.width, first.height) == (96, 96) and len(first.sha256) == 64
    # The vector of an image finds the image itself first.
    index = read_index(settings.indexes_dir / partitions[0].index_file)
    vector = demo_encoder.encode_images([Image.open(root / first.path)])
    assert index.search(vector, 1)[1][0][0] == first.id


def test_folders_layout_with_nested_folders(tmp_path, folders_dataset, demo_encoder):
    settings = settings_for(tmp_path, folders_dataset)
    report = build(settings, demo_encoder)
    assert report.layout == "folders" and report.added == 4
    catalog = assert_consistent(settings)
    names = {p.name: p.count for p in catalog.partitions("test")}
    assert names == {"cats": 2, "dogs": 1, "birds-bees": 1}
    assert {r.class_name for r in catalog.images("test")} == {"cats", "dogs", "birds & bees"}


def test_flat_layout_keeps_partitions_stable(tmp_path, demo_encoder):
    root = tmp_path / "flat"
    for i in range(5):
        save(root / f"img{i}.png", (i * 40, 0, 0))
    settings = settings_for(tmp_path, root, partition_size=2)
    assert build(settings, demo_encoder).layout == "flat"
    catalog = assert_consistent(settings)
    before = {r.path: r.partition for r in catalog.images("test")}
    assert sorted(p.count for p in catalog.partitions("test")) == [1, 2, 2]
    save(root / "img0-new.png", "white")  # sorts between existing files
    build(settings, demo_encoder)
    after = {r.path: r.partition for r in assert_consistent(settings).images("test")}
    assert {p: after[p] for p in before} == before
    assert sorted(p.count for p in Catalog(settings.indexes_dir / CATALOG_NAME).partitions("test")) == [2, 2, 2]


def test_incremental_add_change_delete(tmp_path, folders_dataset, demo_encoder):
    settings = settings_for(tmp_path, folders_dataset)
    build(settings, demo_encoder)
    again = build(settings, demo_encoder)
    assert (again.encoded, again.unchanged, again.partitions_written) == (0, 4, 0)
    old_ids = {r.path: r.id for r in Catalog(settings.indexes_dir / CATALOG_NAME).images("test")}
    save(folders_dataset / "dogs" / "new.png", "black")
    time.sleep(0.01)
    save(folders_dataset / "cats" / "a.png", "purple")
    (folders_dataset / "birds & bees" / "d.webp").unlink()
    report = build(settings, demo_encoder)
    assert (report.added, report.changed, report.removed, report.encoded) == (1, 1, 1, 2)
    catalog = assert_consistent(settings)
    rows = {r.path: r for r in catalog.images("test")}
    assert set(rows) == {"cats/a.png", "cats/sub/deeper/b.jpg", "dogs/c.jpg", "dogs/new.png"}
    assert rows["cats/a.png"].id != old_ids["cats/a.png"]  # changed files get a new vector
    assert rows["dogs/c.jpg"].id == old_ids["dogs/c.jpg"]
    assert not (settings.indexes_dir / f"image_test_birds-bees_{demo_encoder.dim}.index").exists()


def test_parallel_workers_give_the_same_vectors(tmp_path, folders_dataset, demo_encoder):
    serial = settings_for(tmp_path / "a", folders_dataset)
    parallel = settings_for(tmp_path / "b", folders_dataset, num_workers=2, batch_size=2)
    build(serial, demo_encoder), build(parallel, demo_encoder)
    for name in ("cats", "dogs"):
        file = f"image_test_{name}_{demo_encoder.dim}.index"
        a = vectors_of(read_index(serial.indexes_dir / file))[1]
        b = vectors_of(read_index(parallel.indexes_dir / file))[1]
        np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("crash_point", ["before_commit", "after_commit"])
def test_resume_after_a_crash_mid_build(tmp_path, tiny_dataset, demo_encoder, monkeypatch, crash_point):
    root, images = tiny_dataset
    settings = settings_for(tmp_path, root, dataset_name="tiny")
    real_publish, real_apply = index_files.publish, Catalog.apply_partition
    calls = {"n": 0}

    def crash_on_third(*args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # as Ctrl-C, or a kill between the two writes
        return (real_apply if crash_point == "before_commit" else real_publish)(*args)

    if crash_point == "before_commit":
        monkeypatch.setattr(Catalog, "apply_partition", crash_on_third)
    else:
        monkeypatch.setattr(index_files, "publish", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        build(settings, demo_encoder)
    assert list(settings.indexes_dir.glob("*.tmp"))  # the third partition's staged file was left behind
    monkeypatch.undo()
    report = build(settings, demo_encoder)
    catalog = assert_consistent(settings, "tiny")
    assert len(catalog.images("tiny")) == len(images)
    assert report.encoded == len(images) - (2 if crash_point == "before_commit" else 3) * 2


def test_a_damaged_index_file_is_rebuilt(tmp_path, folders_dataset, demo_encoder):
    settings = settings_for(tmp_path, folders_dataset)
    build(settings, demo_encoder)
    path = settings.indexes_dir / f"image_test_cats_{demo_encoder.dim}.index"
    path.write_bytes(b"garbage")
    report = build(settings, demo_encoder)
    assert report.encoded == 2
    assert_consistent(settings)


def test_bad_files_are_skipped_and_reported(tmp_path, folders_dataset, demo_encoder):
    bad = folders_dataset / "cats"
    (bad / "empty.jpg").write_bytes(b"")
    full = (folders_dataset / "dogs" / "c.jpg").read_bytes()
    (bad / "truncated.jpg").write_bytes(full[: len(full) // 2])
    (bad / "text.jpg").write_text("this is not a picture")
    (bad / "notes.txt").write_text("a note")
    (bad / "bomb.png").write_bytes(bomb_png(60_000, 60_000))
    settings = settings_for(tmp_path, folders_dataset)
    report = build(settings, demo_encoder)
    assert report.added == 9 and report.encoded == 4
    reasons = report.skipped
    assert set(reasons) == {f"cats/{n}" for n in ("empty.jpg", "truncated.jpg", "text.jpg", "notes.txt", "bomb.png")}
    assert "not an image" in reasons["cats/empty.jpg"] and "truncated" in reasons["cats/truncated.jpg"]
    assert "not an image file type" in reasons["cats/notes.txt"]
    assert "decompression bomb guard" in reasons["cats/bomb.png"]
    listed = report.report_file.read_text()
    assert all(path in listed for path in reasons)
    assert_consistent(settings)
    again = build(settings, demo_encoder)
    assert again.encoded == 0 and set(again.skipped) == set(reasons)  # not retried, still reported
    (bad / "text.jpg").unlink()
    save(bad / "text.jpg", "yellow")  # fixed: picked up on the next run
    assert build(settings, demo_encoder).added == 1


def test_refuses_to_mix_models(tmp_path, folders_dataset, demo_encoder, other_model_dir, model_cache):
    settings = settings_for(tmp_path, folders_dataset)
    build(settings, demo_encoder)
    other = load_encoder(str(other_model_dir), cache_dir=model_cache)
    with pytest.raises(IndexMismatchError, match="dataset 'test' was built with model 'demo'"):
        build(settings, other)
    report = build(settings, other, rebuild=True)
    assert report.encoded == 4
    files = sorted(p.name for p in settings.indexes_dir.glob("image_test_*.index"))
    assert files and all(f.endswith(f"_{other.dim}.index") for f in files)
    assert Catalog(settings.indexes_dir / CATALOG_NAME).dataset("test").model == other.identity


@pytest.mark.parametrize("index_type", ["hnsw", "ivfpq"])
def test_index_type_flag(tmp_path, folders_dataset, demo_encoder, index_type):
    settings = settings_for(tmp_path, folders_dataset, index_type=index_type)
    build(settings, demo_encoder)
    catalog = assert_consistent(settings)
    assert catalog.dataset("test").index_type == index_type


def test_missing_folder_is_a_clear_error(tmp_path, demo_encoder):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build(settings_for(tmp_path, tmp_path / "nope"), demo_encoder)


def test_a_catalog_without_perceptual_hashes_gets_them_on_the_next_build_without_encoding(tmp_path, folders_dataset,
                                                                                          demo_encoder):
    """An older catalog (no perceptual_hash column): the column is added in place, a read-only reader still
    reads it, and the next build hashes every unchanged file without encoding one."""
    settings = settings_for(tmp_path / "ws", folders_dataset)
    build(settings, demo_encoder)
    catalog = Catalog(settings.indexes_dir / CATALOG_NAME)
    hashed = {r.path: r.perceptual_hash for r in catalog.images("test")}
    assert len(hashed) == 4 and all(len(h) == 107 for h in hashed.values())
    with catalog.transaction() as db:
        db.execute("ALTER TABLE images DROP COLUMN perceptual_hash")
    catalog.close()
    readonly = Catalog(settings.indexes_dir / CATALOG_NAME, readonly=True)
    assert {r.perceptual_hash for r in readonly.images("test")} == {b""}
    readonly.close()
    report = build(settings, demo_encoder)
    assert (report.encoded, report.unchanged, report.hashed) == (0, 4, 4)
    assert "4 unchanged images hashed" in report.summary()
    catalog = Catalog(settings.indexes_dir / CATALOG_NAME)
    assert {r.path: r.perceptual_hash for r in catalog.images("test")} == hashed
    assert build(settings, demo_encoder).hashed == 0
