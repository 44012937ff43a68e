"""score_captions.py: scores, the best other caption, errors kept in the output, readable figures."""
import csv

import pytest
from PIL import Image

from lib.captions.scores import read_pairs
from lib.errors import CaptionTableError
from score_captions import main


@pytest.fixture
def pairs_csv(tmp_path, tiny_dataset):
    """One demo image per class with its true class caption, plus a row whose image is missing."""
    root, images = tiny_dataset
    path = tmp_path / "pairs.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "file", "text"])
        for i, item in enumerate(images[::2]):
            writer.writerow([i, item.path.relative_to(root).as_posix(), f"a photo of a {item.scene.class_name}."])
        writer.writerow([999, "train/nowhere/missing.JPEG", "a photo of nothing."])
    return path, root


def test_scores_and_figures(pairs_csv, tmp_path, capsys):
    path, root = pairs_csv
    out = tmp_path / "out"
    main([str(path), "--images-dir", str(root), "--out-dir", str(out), "--no-progress"])
    rows = list(csv.DictReader(open(out / "output.csv")))
    assert len(rows) == 37 and list(rows[0])[:3] == ["id", "file", "text"]
    assert {"similarity", "best_other_caption", "best_other_score", "error"} <= set(rows[0])
    missing = rows[-1]
    assert missing["similarity"] == "" and missing["best_other_caption"] == "" and "not found" in missing["error"]
    scored = rows[:-1]
    assert all(r["error"] == "" and -1 <= float(r["similarity"]) <= 1 for r in scored)
    assert all(r["best_other_caption"] != r["text"] for r in scored)
    own_best = sum(float(r["similarity"]) > float(r["best_other_score"]) for r in scored)
    assert own_best >= 0.7 * len(scored)  # the true caption wins on the diagonal for most rows
    for name, least in (("image_captions.jpg", (800, 600)), ("similarity_matrix.jpg", (600, 600))):
        with Image.open(out / name) as figure:
            figure.verify()
        with Image.open(out / name) as figure:
            assert figure.format == "JPEG" and figure.width >= least[0] and figure.height >= least[1]
            assert figure.width <= 4000 and figure.height <= 4000
    printed = capsys.readouterr().out.strip().splitlines()
    assert "36 scored, 1 with a missing or unreadable image" in printed[-2]
    assert printed[-1].startswith("wall time ") and "peak memory" in printed[-1]


def test_many_rows_keep_figures_readable(pairs_csv, tmp_path):
    path, root = pairs_csv
    big = tmp_path / "big.csv"
    lines = path.read_text().splitlines()
    big.write_text("\n".join([lines[0]] + lines[1:-1] * 4) + "\n")  # 144 rows
    out = tmp_path / "big-out"
    main([str(big), "--images-dir", str(root), "--out-dir", str(out), "--no-progress", "--max-grid", "12"])
    with Image.open(out / "image_captions.jpg") as grid, Image.open(out / "similarity_matrix.jpg") as matrix:
        assert grid.height < 1200 and matrix.width <= 4000


def test_csv_without_the_needed_columns(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("photo,words\na.jpg,hello\n")
    with pytest.raises(CaptionTableError, match="no image column .* its columns are photo, words"):
        read_pairs(bad)
    with pytest.raises(CaptionTableError, match="no caption column 'label'; its columns are photo, words"):
        read_pairs(bad, image_column="photo", caption_column="label")
    assert read_pairs(bad, "photo", "words").rows == [{"photo": "a.jpg", "words": "hello"}]


def test_cli_says_what_is_wrong(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("photo,words\n")
    with pytest.raises(SystemExit) as exit_info:
        main([str(bad)])
    assert exit_info.value.code == 2 and "its columns are photo, words" in capsys.readouterr().err
