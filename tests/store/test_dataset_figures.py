"""Figures recorded beside an index set: duplicate thresholds and evaluations, each for one model's weights."""
import pytest

from lib.errors import ClipSearchError
from lib.store.dataset_figures import (
    DuplicateThresholds,
    figures_path,
    load_evaluations,
    load_thresholds,
    save_evaluation,
    save_thresholds,
)
from lib.store.identity import ModelIdentity

MODEL = ModelIdentity("demo", "a" * 64, 128)
OTHER = ModelIdentity("other", "b" * 64, 128)


def test_thresholds_hold_only_for_the_model_they_were_calibrated_with(tmp_path):
    save_thresholds(tmp_path, "photos", DuplicateThresholds(0.97, 0.9, MODEL, "now", {"images": 10}))
    loaded = load_thresholds(tmp_path, "photos", MODEL)
    assert (loaded.near, loaded.similar, loaded.details) == (0.97, 0.9, {"images": 10})
    assert load_thresholds(tmp_path, "photos", OTHER) is None
    assert load_thresholds(tmp_path, "other-dataset", MODEL) is None


def test_damaged_or_impossible_thresholds_are_ignored_or_refused(tmp_path):
    figures_path(tmp_path, "duplicates", "photos").write_text("{not json")
    assert load_thresholds(tmp_path, "photos", MODEL) is None
    with pytest.raises(ClipSearchError, match="cosines between -1 and 1"):
        DuplicateThresholds(1.2, 0.9)
    assert DuplicateThresholds(0.8, 0.9).similar == 0.9  # near also asks the pixels: either may be higher


def test_one_evaluation_per_model_is_kept(tmp_path):
    save_evaluation(tmp_path, "photos", MODEL, {"zero_shot_top1": 0.5})
    save_evaluation(tmp_path, "photos", OTHER, {"zero_shot_top1": 0.7})
    save_evaluation(tmp_path, "photos", MODEL, {"zero_shot_top1": 0.6})
    entries = load_evaluations(tmp_path, "photos")
    assert [(e["model"]["spec"], e["zero_shot_top1"]) for e in entries] == [("other", 0.7), ("demo", 0.6)]
    assert all(e["computed_at"] for e in entries) and load_evaluations(tmp_path, "none") == []
