"""find_duplicates.py: the summary, the CSV with its exact header, tiers chosen, nothing deleted, clear errors."""
import csv

import pytest

from find_duplicates import main
from lib.store.dataset_figures import figures_path


def run_cli(capsys, *argv):
    main(list(argv))
    return capsys.readouterr().out


def test_csv_lists_every_image_of_every_group_and_nothing_is_deleted(planted_workspace, tmp_path, capsys):
    settings, files = planted_workspace
    out = run_cli(capsys, "planted", "--workspace", str(settings.workspace), "--csv", str(tmp_path / "dups.csv"))
    assert "| exact |" in out and "nothing was deleted" in out
    with open(tmp_path / "dups.csv", newline="") as handle:
        assert handle.readline() == "group,tier,keep,path,bytes,score\n"
        rows = list(csv.DictReader(handle, fieldnames=["group", "tier", "keep", "path", "bytes", "score"]))
    root = settings.resolve(settings.dataset_path)
    assert rows and all((root / row["path"]).is_file() for row in rows)  # relative to the dataset root
    assert all((root / f.path).is_file() for f in files)
    exact = [row for row in rows if row["tier"] == "exact"]
    assert len(exact) == 2 * sum(f.kind == "exact" for f in files)  # each exact copy with its original
    assert {row["keep"] for row in rows} == {"0", "1"}
    assert all(int(row["bytes"]) == (root / row["path"]).stat().st_size for row in rows)


def test_tiers_can_be_chosen_and_thresholds_given(planted_workspace, tmp_path, capsys):
    settings, _ = planted_workspace
    out = run_cli(capsys, "planted", "--workspace", str(settings.workspace), "--tier", "similar", "--near", "0.99",
                  "--similar", "0.85", "--csv", str(tmp_path / "similar.csv"), "--show", "1")
    assert "near >= 0.9900, similar >= 0.8500 (given)" in out
    rows = list(csv.DictReader(open(tmp_path / "similar.csv", newline="")))
    assert rows and {row["tier"] for row in rows} == {"similar"}


def test_a_dataset_without_thresholds_is_calibrated_first(tmp_path, tiny_dataset, demo_encoder, model_cache, capsys):
    from lib.ingest.image_index import build_image_index
    from lib.settings import load_settings
    from tests.helpers import share_model_cache

    root, _ = tiny_dataset
    share_model_cache(tmp_path, model_cache)  # the CLI loads the model: converted and measured once a session
    settings = load_settings(environ={}, overrides=dict(workspace=str(tmp_path), dataset_name="tiny",
                                                        dataset_path=str(root), num_workers=0, calibration_images=0))
    build_image_index(settings, demo_encoder, progress=False)
    out = run_cli(capsys, "tiny", "--workspace", str(tmp_path), "--calibration-images", "8")
    assert "calibrating the duplicate thresholds with demo" in out
    assert figures_path(settings.indexes_dir, "duplicates", "tiny").is_file()


@pytest.mark.parametrize("argv, words", [
    (["nope"], "unknown dataset 'nope'"),
    (["planted", "--near", "1.5"], "cosines between -1 and 1"),
])
def test_bad_input_is_one_line_with_status_2(planted_workspace, capsys, argv, words):
    settings, _ = planted_workspace
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--workspace", str(settings.workspace)])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and words in err
