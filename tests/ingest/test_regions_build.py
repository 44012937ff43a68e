"""Builds with --regions: a collage's and a screenshot's parts indexed as entries of their own, incrementally."""
import dataclasses
import subprocess
import sys

import pytest

from lib.ingest.image_index import build_image_index
from lib.serve.index_set import LiveIndexSet
from lib.serve.search import SearchService
from lib.store.catalog import Catalog
from tests.conftest import REPO, write_collage_folder
from tests.helpers import share_model_cache


def near(found, box, pixels: int = 4) -> bool:
    return found is not None and all(abs(a - b) <= pixels for a, b in zip(found, box, strict=True))


def rows_by_path(settings, dataset):
    rows = {}
    for row in Catalog.in_folder(settings.indexes_dir, readonly=True).images(dataset):
        rows.setdefault(row.path, []).append(row)
    return rows


def test_a_collage_and_a_screenshot_index_their_parts(regions_workspace):
    settings, parts = regions_workspace
    rows = rows_by_path(settings, "parts")
    assert all(len(rows[f"photo_{i}.jpg"]) == 1 for i in range(10))  # plain photos: one entry each
    for composite, truth in parts.items():
        regions = sorted((r for r in rows[composite] if r.region), key=lambda r: -r.scene)
        whole = [r for r in rows[composite] if not r.region]
        assert len(whole) == 1 and whole[0].scene == -1 and len(regions) == len(truth)
        for row, (_, box) in zip(regions, truth, strict=True):
            assert row.scene < -1 and row.media == "image" and row.sha256 == whole[0].sha256
            assert near(row.box, box), (row.box, box)


def test_a_part_finds_the_picture_that_holds_it(regions_workspace, demo_encoder):
    settings, parts = regions_workspace
    service = SearchService(demo_encoder, LiveIndexSet(settings.indexes_dir, settings.indexes_text_dir,
                                                       demo_encoder.identity))
    rows = rows_by_path(settings, "parts")
    for composite, truth in parts.items():
        for name, box in truth:
            hits = service.similar(5, image_id=rows[name][0].id)
            holder = [h for h in hits if h.path == composite]
            assert holder and holder[0] is hits[0], (name, [(h.path, h.score) for h in hits])
            assert near(holder[0].region, box)
            assert len(holder) == 1  # a picture once, by its best entry
    collage_rows = {r.id for r in rows["collage.jpg"]}
    assert not collage_rows & {h.id for h in service.similar(20, image_id=rows["collage.jpg"][0].id)}


def test_regions_are_kept_then_removed_incrementally(tmp_path, demo_encoder, model_cache):
    root = tmp_path / "pictures"
    write_collage_folder(root)
    workspace = share_model_cache(tmp_path / "workspace", model_cache)
    from lib.settings import load_settings

    settings = load_settings(environ={}, overrides=dict(workspace=str(workspace), dataset_name="p",
                                                        dataset_path=str(root), num_workers=0, regions="on"))
    first = build_image_index(settings, demo_encoder, progress=False, calibrate=False)
    assert (first.split, first.regions) == (2, 6) and "2 pictures split into 6 regions" in first.summary()
    again = build_image_index(dataclasses.replace(settings, regions="auto"), demo_encoder, progress=False,
                              calibrate=False)
    assert again.encoded == 0 and again.unchanged == 12  # auto: what the last build did, nothing to redo
    assert sum(bool(r.region) for rows in rows_by_path(settings, "p").values() for r in rows) == 6
    (root / "page.png").unlink()
    removed = build_image_index(settings, demo_encoder, progress=False, calibrate=False)
    assert removed.removed == 1 and sum(bool(r.region) for rs in rows_by_path(settings, "p").values() for r in rs) == 4
    off = build_image_index(dataclasses.replace(settings, regions="off"), demo_encoder, progress=False,
                            calibrate=False)
    assert off.encoded == 11 and off.split == 0  # every picture again, now whole only
    rows = rows_by_path(settings, "p")
    assert not any(r.region for rs in rows.values() for r in rs) and all(len(rs) == 1 for rs in rows.values())


def test_the_cli_flag(tmp_path, model_cache):
    root = tmp_path / "pictures"
    write_collage_folder(root)
    workspace = share_model_cache(tmp_path / "workspace", model_cache)
    command = [sys.executable, str(REPO / "build_image_index.py"), "cli", str(root), "--workspace", str(workspace),
               "--regions", "--no-progress", "--calibration-images", "0", "--precision", "fp32"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "2 pictures split into 6 regions" in done.stdout + done.stderr


def test_the_ray_engine_refuses_regions_in_one_line(tmp_path, demo_encoder):
    from lib.errors import ClipSearchError
    from lib.ingest.ray_engine import RayEngine
    from lib.settings import load_settings

    engine = RayEngine(load_settings(environ={}, overrides=dict(workspace=str(tmp_path))), demo_encoder)
    with pytest.raises(ClipSearchError, match="does not split pictures into regions yet; build this dataset with "
                                              "the local engine"):
        next(engine.encode(tmp_path, [], regions=True))
