"""Calibration of the duplicate thresholds: the rule on known distributions, and the record a build leaves."""
import json
import random

import numpy as np
import pytest

from lib.errors import IndexMismatchError
from lib.ingest.calibrate import (
    DEFAULT_NEAR,
    DEFAULT_SIMILAR,
    calibrate_duplicates,
    choose_thresholds,
    needs_calibration,
    spread_sample,
)
from lib.ingest.image_index import build_image_index
from lib.store.catalog import ImageRecord
from lib.store.dataset_figures import figures_path, load_thresholds


def test_separable_model_gets_a_similar_band_below_near():
    rng = np.random.default_rng(0)
    edits = rng.uniform(0.93, 1.0, 2000)
    distinct = rng.uniform(0.2, 0.85, 20000)
    near, similar, share = choose_thresholds(edits, distinct)
    assert near == pytest.approx(np.percentile(edits, 2)) and similar == pytest.approx(0.85, abs=0.002)
    assert share == 0.0 and near > similar


def test_overlap_leaves_near_at_the_edits_and_similar_at_the_distinct_cut():
    """A weak model (a crop can score 0.6): near still catches 99 % of edits, since the pixels must agree too;
    similar, which the embedding decides alone, stays where distinct pairs hardly reach."""
    rng = np.random.default_rng(1)
    edits = rng.uniform(0.6, 1.0, 2000)
    distinct = rng.uniform(0.2, 0.95, 20000)
    near, similar, _ = choose_thresholds(edits, distinct)
    assert near == pytest.approx(np.percentile(edits, 2)) and 0.93 <= similar <= 0.95


def test_duplicates_among_the_distinct_pairs_are_taken_out():
    rng = np.random.default_rng(2)
    edits = rng.uniform(0.97, 1.0, 50000)  # large samples: the subtraction is an estimate, noisy at 0.1 %
    clean = rng.uniform(0.2, 0.85, 90000)
    polluted = np.concatenate([clean, rng.uniform(0.97, 1.0, 10000)])  # 10 % of the pairs are duplicates
    assert np.percentile(polluted, 99.9) > 0.99
    near, similar, share = choose_thresholds(edits, polluted)
    assert share == pytest.approx(0.1, abs=0.01) and similar < 0.9 and near == pytest.approx(np.percentile(edits, 2))


def test_the_sample_takes_every_class_in_turn():
    records = [ImageRecord(i, "d", f"p{i % 3}", f"{i}.jpg", "", 1, 1, 1, 1, "") for i in range(30)]
    picked = spread_sample(records, 6, random.Random(0))
    assert sorted(r.partition for r in picked) == ["p0", "p0", "p1", "p1", "p2", "p2"]


def test_a_build_records_calibrated_thresholds(planted_workspace, demo_encoder):
    settings, files = planted_workspace
    recorded = load_thresholds(settings.indexes_dir, "planted", demo_encoder.identity)
    assert recorded is not None and not recorded.defaults and -1 <= recorded.similar <= 1 and -1 <= recorded.near <= 1
    details = recorded.details
    assert details["edited_images"] == 48 and details["images"] == len(files) and details["distinct_pairs"] > 0
    assert set(details["edits"]) >= {"jpeg q50", "resize 50%", "crop 10%", "rotate 3°", "recolour"}
    assert not needs_calibration(settings.indexes_dir, "planted", demo_encoder, len(files))
    assert needs_calibration(settings.indexes_dir, "planted", demo_encoder, 3 * len(files))  # grown more than twice


def test_a_small_library_gets_the_documented_defaults(built_workspace, demo_encoder):
    """72 training images: too few pairs for percentiles, so the defaults, with the reason recorded."""
    recorded = load_thresholds(built_workspace.indexes_dir, "tiny", demo_encoder.identity)
    assert recorded.defaults and (recorded.near, recorded.similar) == (DEFAULT_NEAR, DEFAULT_SIMILAR)
    assert recorded.details["images"] == 72 and "too few to calibrate on" in recorded.details["reason"]
    assert not needs_calibration(built_workspace.indexes_dir, "tiny", demo_encoder, 72)


def test_calibration_with_another_model_is_refused(built_workspace, other_model_dir):
    from lib.model.loading import load_encoder

    with pytest.raises(IndexMismatchError):
        calibrate_duplicates(built_workspace.indexes_dir, "tiny", load_encoder(str(other_model_dir)))


def test_no_calibration_when_the_setting_is_zero(tmp_path, tiny_dataset, demo_encoder):
    from lib.settings import load_settings

    root, _ = tiny_dataset
    settings = load_settings(environ={}, overrides=dict(workspace=str(tmp_path), dataset_name="tiny",
                                                        dataset_path=str(root), num_workers=0, calibration_images=0))
    report = build_image_index(settings, demo_encoder, progress=False)
    assert report.thresholds is None and not figures_path(settings.indexes_dir, "duplicates", "tiny").exists()
    thresholds = calibrate_duplicates(settings.indexes_dir, "tiny", demo_encoder, sample_size=4)
    assert json.loads(figures_path(settings.indexes_dir, "duplicates", "tiny").read_text())["near"] == thresholds.near


def test_a_full_disk_while_calibrating_after_a_build_leaves_only_the_thresholds_missing(
        tmp_path, tiny_dataset, demo_encoder, monkeypatch, caplog):
    import errno
    import logging

    import lib.ingest.calibrate as calibrate
    from lib.settings import load_settings

    root, _ = tiny_dataset
    settings = load_settings(environ={}, overrides=dict(workspace=str(tmp_path), dataset_name="tiny",
                                                        dataset_path=str(root), num_workers=0))
    report = build_image_index(settings, demo_encoder, progress=False, calibrate=False)
    assert report.thresholds is None

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(settings.indexes_dir / "figures.json"))

    monkeypatch.setattr(calibrate, "calibrate_duplicates", full)
    with caplog.at_level(logging.WARNING, logger="lib.ingest.calibrate"):
        calibrate.calibrate_build(settings, demo_encoder, report)
    assert report.thresholds is None and not figures_path(settings.indexes_dir, "duplicates", "tiny").exists()
    assert "duplicate thresholds not calibrated: no space left on" in caplog.text
    assert "partitions committed" in caplog.text and "find_duplicates.py tiny --calibrate" in caplog.text

    def broken(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(calibrate, "calibrate_duplicates", broken)
    with pytest.raises(OSError, match="Input/output"):  # not a full disk: not hidden
        calibrate.calibrate_build(settings, demo_encoder, report)
