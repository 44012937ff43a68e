"""Evaluation on a user's own class folders: the same figures as the synthetic held-out evaluation."""
import json

import pytest

from lib.data.synthetic import generate_dataset
from lib.errors import ClipSearchError
from lib.ingest.image_index import build_image_index
from lib.model.evaluate import evaluate, main
from lib.model.folder_eval import evaluate_folders
from lib.settings import load_settings
from lib.store.dataset_figures import load_evaluations
from lib.store.files import sha256_file
from tests.helpers import share_model_cache

SEED, PER_CLASS = 2024, 10


@pytest.fixture(scope="module")
def held_out(tmp_path_factory, demo_encoder, model_cache):
    """The synthetic evaluation's own held-out set, written to a folder and indexed like a user's photos."""
    root = tmp_path_factory.mktemp("held-out")
    generate_dataset(root, seed=SEED, per_class=PER_CLASS)
    workspace = share_model_cache(tmp_path_factory.mktemp("ws"), model_cache)  # the CLI test loads the model there
    settings = load_settings(environ={}, overrides=dict(workspace=str(workspace),
                                                        dataset_name="held", dataset_path=str(root), num_workers=0,
                                                        calibration_images=0))
    build_image_index(settings, demo_encoder, progress=False)
    return settings


def test_figures_agree_with_the_synthetic_evaluation(held_out, demo_encoder):
    folders = evaluate_folders(held_out.indexes_dir, held_out.indexes_text_dir, "held", progress=False)
    synthetic = evaluate(demo_encoder, seed=SEED, per_class=PER_CLASS)
    assert folders.from_index and (folders.images, folders.classes) == (360, 36)
    for name in ("zero_shot_top1", "zero_shot_top5", "precision_at_10", "map", "image_recall_at_10",
                 "image_precision_at_10"):
        assert getattr(folders.figures, name) == pytest.approx(getattr(synthetic, name), abs=0.02), name
    assert folders.figures.zero_shot_top1 >= 0.7  # and far above chance (1/36)
    (recorded,) = load_evaluations(held_out.indexes_dir, "held")
    assert recorded["model"]["spec"] == "demo" and recorded["map"] == pytest.approx(folders.figures.map, abs=1e-4)


def test_another_model_is_evaluated_without_touching_the_index(held_out, other_model_dir):
    before = {p.name: sha256_file(p) for p in held_out.indexes_dir.glob("*.index")}
    other = evaluate_folders(held_out.indexes_dir, held_out.indexes_text_dir, "held", str(other_model_dir),
                             num_workers=0, progress=False)
    assert not other.from_index and other.images == 360 and other.unreadable == 0
    assert {p.name: sha256_file(p) for p in held_out.indexes_dir.glob("*.index")} == before
    specs = [e["model"]["spec"] for e in load_evaluations(held_out.indexes_dir, "held")]
    assert str(other_model_dir) in specs and "demo" in specs


def test_cli_ends_with_a_json_line(held_out, capsys):
    main(["--dataset", "held", "--workspace", str(held_out.workspace), "--no-progress"])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["dataset"] == "held" and last["classes"] == 36 and 0 <= last["zero_shot_top5"] <= 1
    assert last["templates"] == ["a photo of a {}."]


def test_flat_datasets_and_unknown_names_are_refused(tmp_path, demo_encoder, tiny_dataset):
    root, _ = tiny_dataset
    settings = load_settings(environ={}, overrides=dict(workspace=str(tmp_path), dataset_name="flat", layout="flat",
                                                        dataset_path=str(root / "val"), num_workers=0,
                                                        calibration_images=0))
    build_image_index(settings, demo_encoder, progress=False)
    with pytest.raises(ClipSearchError, match="no class folders"):
        evaluate_folders(settings.indexes_dir, settings.indexes_text_dir, "flat")
    with pytest.raises(ClipSearchError, match="unknown dataset 'nope'"):
        evaluate_folders(settings.indexes_dir, settings.indexes_text_dir, "nope")
