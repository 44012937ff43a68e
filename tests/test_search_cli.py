"""search.py: ranked paths with scores from the index files on disk, the grammar, pages, JSON, one-line errors."""
import json

import pytest

from search import main


def run_cli(capsys, workspace, *argv):
    main(["tiny", *argv, "--workspace", str(workspace.workspace)])
    return capsys.readouterr().out


def test_prints_ranked_paths_with_scores(built_workspace, capsys):
    out = run_cli(capsys, built_workspace, "red circle", "-k", "3").splitlines()
    rows = [line.split(None, 1) for line in out if not line.startswith("#")]
    assert len(rows) == 3 and all("n90000000" in path for _, path in rows[:2])  # the red circles' folder
    scores = [float(score) for score, _ in rows]
    assert scores == sorted(scores, reverse=True)
    assert out[-1] == "# more: --offset 3"


def test_json_pages_and_the_grammar(built_workspace, capsys):
    first = json.loads(run_cli(capsys, built_workspace, "red circle - circle + square", "-k", "4", "--json"))
    assert first["parsed"] == [{"text": "red circle", "weight": 1.0}, {"text": "circle", "weight": -1.0},
                               {"text": "square", "weight": 1.0}]
    assert [r["class_name"] for r in first["results"][:2]] == ["red square", "red square"]
    second = json.loads(run_cli(capsys, built_workspace, "red circle - circle + square", "-k", "4", "--json",
                                "--offset", str(first["next_offset"])))
    ids = [r["id"] for r in first["results"] + second["results"]]
    assert len(set(ids)) == 8 and first["results"][-1]["score"] >= second["results"][0]["score"]


def test_relevant_only_and_an_image_term(built_workspace, tiny_dataset, capsys):
    out = run_cli(capsys, built_workspace, "green star", "--relevant", "-k", "50")
    assert "# results score at least" in out and len(out.splitlines()) < 50
    root, images = tiny_dataset
    picture = next(item for item in images if item.scene.class_name == "blue cross")
    out = run_cli(capsys, built_workspace, "--image", str(picture.path), "-k", "1")
    assert float(out.split()[0]) > 0.99  # the picture itself


@pytest.mark.parametrize("argv, words", [
    (["red -"], "term 2 is empty"),
    (["red", "--date-from", "yesterday"], "not an ISO 8601 date"),
    ([], "give a query, an --image, or both"),
    (["red", "-k", "0"], "-k must be 1 or more"),
])
def test_bad_input_is_one_line(built_workspace, capsys, argv, words):
    with pytest.raises(SystemExit) as stopped:
        main(["tiny", *argv, "--workspace", str(built_workspace.workspace)])
    err = capsys.readouterr().err.strip()
    assert stopped.value.code == 2 and len(err.splitlines()) == 1 and words in err
