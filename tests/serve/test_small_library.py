"""A small library (too few images to calibrate on) grouped right at every size: byte copies exact, upscaled
re-saves near, distinct drawings of one class never near, with the documented default thresholds said."""
import random
import shutil

import pytest

from lib.data.synthetic import draw_scene, random_scene
from lib.data.variants import resized
from lib.ingest.calibrate import DEFAULT_NEAR, DEFAULT_SIMILAR
from lib.ingest.image_index import build_image_index
from lib.model.loading import load_encoder
from lib.serve.duplicate_finder import group_dataset
from lib.serve.index_set import load_dataset
from lib.settings import load_settings
from lib.store.catalog import Catalog
from lib.store.dataset_figures import load_thresholds


def small_library(root, size: int, rng: random.Random) -> tuple[set, set]:
    """`size` files: distinct drawings of a few classes, a byte copy of every 5th, an upscaled q90 re-save of
    every 4th; returns the exact and near pairs that should be found."""
    exact, near = set(), set()
    files = 0
    drawing = 0
    while files < size:
        scene = random_scene(rng.choice(["red", "blue"]), rng.choice(["circle", "star"]), rng)
        name = f"{scene.colour}-{scene.shape}/{drawing:03d}.jpg"
        image = draw_scene(scene, rng, 160)
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        image.save(root / name, "JPEG", quality=92)
        files += 1
        if drawing % 5 == 1 and files < size:
            copy = f"backup/{drawing:03d}.jpg"
            (root / "backup").mkdir(exist_ok=True)
            shutil.copyfile(root / name, root / copy)
            exact.add(frozenset((name, copy)))
            files += 1
        if drawing % 4 == 2 and files < size:
            resave = f"{scene.colour}-{scene.shape}/{drawing:03d}-large.jpg"
            resized(image, 1.6).save(root / resave, "JPEG", quality=90)
            near.add(frozenset((name, resave)))
            files += 1
        drawing += 1
    return exact, near


@pytest.mark.parametrize("size", [10, 24, 60])
def test_a_small_library_is_grouped_right(tmp_path, model_cache, size):
    root = tmp_path / "library"
    exact, near = small_library(root, size, random.Random(size))
    settings = load_settings(environ={}, overrides=dict(workspace=str(tmp_path / "ws"), dataset_name="small",
                                                        dataset_path=str(root), num_workers=0))
    build_image_index(settings, load_encoder("demo", precision="fp32", cache_dir=model_cache), progress=False)
    dataset = load_dataset(settings.indexes_dir, "small")
    thresholds = load_thresholds(settings.indexes_dir, "small", dataset.record.model)
    assert thresholds.defaults and (thresholds.near, thresholds.similar) == (DEFAULT_NEAR, DEFAULT_SIMILAR)
    assert "too few to calibrate on" in thresholds.details["reason"]
    catalog = Catalog.in_folder(settings.indexes_dir, readonly=True)
    report = group_dataset(dataset, catalog, thresholds)
    catalog.close()
    found = {tier: {frozenset((g.keeper.path, m.path)) for g in report.groups if g.tier == tier for m in g.members[1:]}
             for tier in ("exact", "near")}
    assert found["exact"] == exact
    assert found["near"] == near  # every re-save with its own original, and no two distinct drawings
