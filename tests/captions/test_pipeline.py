"""A whole scoring run: output.csv, outliers.csv, suggestions.csv, each distinct image and caption encoded
once, and the same scores from a CSV, a Parquet file and an embeddings folder."""
from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lib.captions.options import ScoreOptions
from lib.captions.outputs import ADDED_COLUMNS, OUTLIER_COLUMNS
from lib.captions.pairs import open_pairs
from lib.captions.pipeline import score_captions
from score_captions import main
from tests.captions.conftest import HEADER, MISSING, read_csv, write_csv
from tests.helpers import share_model_cache

EMBEDDING_FILES = ("img_emb", "metadata")


def test_output_has_every_row_and_the_added_columns(scored_run, pairs_table):
    summary, out = scored_run
    rows = read_csv(out / "output.csv")
    assert list(rows[0]) == HEADER + list(ADDED_COLUMNS)
    assert [[r[c] for c in HEADER] for r in rows] == pairs_table.rows
    missing = rows[-1]
    assert missing["file"] == MISSING and missing["error"] == "file not found"
    assert all(missing[c] == "" for c in ADDED_COLUMNS if c != "error")
    scored = rows[:-1]
    assert summary["rows"] == len(rows) and summary["scored"] == len(scored) and summary["errors"] == 1
    own = defaultdict(set)
    for row in scored:
        own[row["file"]].add(row["text"])
    for row in scored:
        assert row["error"] == "" and -1 <= float(row["similarity"]) <= 1
        assert row["best_other_caption"] and row["best_other_caption"] not in own[row["file"]]
    fits = sum(float(r["similarity"]) > float(r["best_other_score"]) for r in scored)
    assert fits == summary["own_caption_best"] and fits >= 0.5 * len(scored)


def test_rank_and_z(scored_run):
    summary, out = scored_run
    rows = [r for r in read_csv(out / "output.csv") if not r["error"]]
    by_image = defaultdict(list)
    for row in rows:
        by_image[row["file"]].append(row)
    for group in by_image.values():
        for row in group:
            better = {r["text"] for r in group if float(r["similarity"]) > float(row["similarity"])}
            assert int(row["rank_of_own_caption"]) == 1 + len(better)
    similarity = np.array([float(r["similarity"]) for r in rows])
    median = np.median(similarity)
    spread = 1.4826 * np.median(np.abs(similarity - median))
    assert summary["median_similarity"] == pytest.approx(median, abs=1e-5)
    z = np.array([float(r["z"]) for r in rows])
    assert np.allclose(z, (similarity - median) / spread, atol=2e-3)


def test_wrong_captions_come_first(scored_run, pairs_table):
    summary, out = scored_run
    outliers = read_csv(out / "outliers.csv")
    assert list(outliers[0]) == list(OUTLIER_COLUMNS)
    injected = {(pairs_table.rows[r][1], pairs_table.rows[r][2]) for r in pairs_table.wrong}
    first = {(row["image"], row["caption"]) for row in outliers[:len(injected)]}
    assert first == injected
    assert all(row["reason"] in ("low score", "another caption fits much better", "both") for row in outliers)
    worst = outliers[0]
    assert float(worst["similarity"]) <= summary["low_score_cutoff"] or \
        float(worst["best_other_score"]) - float(worst["similarity"]) >= summary["gap_cutoff"]
    assert summary["outliers"] == len(outliers)


def test_outliers_caps_the_list(pairs_table, demo_encoder, tmp_path):
    options = ScoreOptions(images_dir=pairs_table.root, out_dir=tmp_path, outliers=2, progress=False)
    summary = score_captions(open_pairs(pairs_table.path), demo_encoder, 32, 0, options)
    outliers = read_csv(tmp_path / "outliers.csv")
    assert len(outliers) == 2 == summary["outliers"]
    assert {(r["image"], r["caption"]) for r in outliers} <= {tuple(pairs_table.rows[r][1:]) for r in pairs_table.wrong}


def test_suggestions_are_the_best_that_are_not_their_own(scored_run, pairs_table, demo_encoder):
    _, out = scored_run
    suggestions = read_csv(out / "suggestions.csv")
    own_captions, own_images = defaultdict(set), defaultdict(set)
    for _, image, caption in pairs_table.rows:
        own_captions[image].add(caption)
        own_images[caption].add(image)
    del own_captions[MISSING]  # an image that cannot be read gets no suggestions; its caption does
    by_query = defaultdict(list)
    for row in suggestions:
        by_query[row["query_kind"], row["query"]].append(row)
    assert {q for kind, q in by_query if kind == "image"} == set(own_captions)
    assert {q for kind, q in by_query if kind == "caption"} == set(own_images)
    for (kind, query), rows in by_query.items():
        assert [int(r["rank"]) for r in rows] == [1, 2, 3]
        scores = [float(r["score"]) for r in rows]
        assert scores == sorted(scores, reverse=True)
        own = own_captions[query] if kind == "image" else own_images[query]
        assert not own & {r["suggestion"] for r in rows}
    image = next(iter(own_captions))
    rows = by_query["image", image]
    vectors = demo_encoder.encode_texts([r["suggestion"] for r in rows])
    all_captions = sorted({c for _, _, c in pairs_table.rows} - own_captions[image])
    from lib.data.images import open_image
    picture = demo_encoder.encode_images([open_image(pairs_table.root / image)])[0]
    expected = np.sort(demo_encoder.encode_texts(all_captions) @ picture)[::-1][:3]
    assert np.allclose(vectors @ picture, [float(r["score"]) for r in rows], atol=0.02)
    assert np.allclose(expected, [float(r["score"]) for r in rows], atol=0.02)


class CountingEncoder:
    """The demo encoder, counting the images and texts it is asked to embed."""

    def __init__(self, encoder) -> None:
        self.encoder, self.images, self.texts = encoder, 0, 0

    def __getattr__(self, name):
        return getattr(self.encoder, name)

    def encode_pixels(self, pixels):
        self.images += len(pixels)
        return self.encoder.encode_pixels(pixels)

    def encode_texts(self, texts, batch_size=256):
        self.texts += len(texts)
        return self.encoder.encode_texts(texts, batch_size)


def test_repeated_images_and_captions_are_encoded_once(pairs_table, demo_encoder, tmp_path):
    rows = pairs_table.rows[:-1] * 3  # every image and caption three times more
    path = tmp_path / "repeated.csv"
    path.write_text("file,text\n" + "".join(f"{image},\"{caption}\"\n" for _, image, caption in rows))
    counting = CountingEncoder(demo_encoder)
    options = ScoreOptions(images_dir=pairs_table.root, out_dir=tmp_path / "out", progress=False, chunk_rows=100)
    summary = score_captions(open_pairs(path), counting, 16, 2, options)
    images, captions = {r[1] for r in rows}, {r[2] for r in rows}
    assert summary["rows"] == len(rows) and summary["scored"] == len(rows)
    assert counting.images == len(images) == summary["distinct_images"]
    assert counting.texts == len(captions) == summary["distinct_captions"]


def test_parquet_and_embeddings_folder_give_the_same_scores(scored_run, pairs_table, demo_encoder, tmp_path):
    _, out = scored_run
    expected = read_csv(out / "output.csv")[:-1]
    rows = pairs_table.rows[:-1]
    table = pa.table({"id": [int(r[0]) for r in rows], "image": [r[1] for r in rows], "caption": [r[2] for r in rows],
                      "jpg": [b"\xff\xd8"] * len(rows)})  # a binary column is not copied into output.csv
    pq.write_table(table, tmp_path / "pairs.parquet", row_group_size=100)
    options = ScoreOptions(images_dir=pairs_table.root, out_dir=tmp_path / "from-parquet", progress=False)
    score_captions(open_pairs(tmp_path / "pairs.parquet"), demo_encoder, 32, 0, options)
    parquet = read_csv(tmp_path / "from-parquet" / "output.csv")
    assert list(parquet[0])[:3] == ["id", "image", "caption"] and "jpg" not in parquet[0]
    assert [r["similarity"] for r in parquet] == [r["similarity"] for r in expected]

    folder = tmp_path / "embeddings"
    for name in EMBEDDING_FILES:
        (folder / name).mkdir(parents=True)
    from lib.data.images import open_image
    paths = sorted({r[1] for r in rows})
    vectors = demo_encoder.encode_images([open_image(pairs_table.root / p) for p in paths])
    for part, (start, end) in enumerate([(0, 50), (50, len(paths))]):
        np.save(folder / "img_emb" / f"img_emb_{part}.npy", (vectors[start:end] * 3).astype(np.float16))
        pq.write_table(pa.table({"image_path": [str(pairs_table.root / p) for p in paths[start:end]]}),
                       folder / "metadata" / f"metadata_{part}.parquet")
    options = ScoreOptions(images_dir=pairs_table.root, out_dir=tmp_path / "from-folder", progress=False,
                           image_embeddings=folder)
    summary = score_captions(open_pairs(tmp_path / "pairs.parquet"), demo_encoder, 32, 0, options)
    assert summary["unreadable_images"] == 0 and "embeddings" in summary["preprocessing"]["images"]
    from_folder = read_csv(tmp_path / "from-folder" / "output.csv")
    assert np.allclose([float(r["similarity"]) for r in from_folder], [float(r["similarity"]) for r in expected],
                       atol=0.01)


def test_rows_without_an_image_or_a_caption_keep_their_reason(pairs_table, demo_encoder, tmp_path):
    image = pairs_table.rows[0][1]
    path = tmp_path / "gaps.csv"
    path.write_text(f"file,text,note\n{image},a red circle,kept\n, a red circle ,no image\n{image},  ,no caption\n"
                    f"{image},,no caption either\n")
    options = ScoreOptions(images_dir=pairs_table.root, out_dir=tmp_path / "out", progress=False)
    summary = score_captions(open_pairs(path), demo_encoder, 32, 0, options)
    rows = read_csv(tmp_path / "out" / "output.csv")
    assert [r["error"] for r in rows] == ["", "no image named in this row", "no caption in this row",
                                          "no caption in this row"]
    assert [r["note"] for r in rows] == ["kept", "no image", "no caption", "no caption either"]
    assert summary["scored"] == 1 and summary["errors"] == 3 and summary["distinct_captions"] == 1
    assert rows[0]["rank_of_own_caption"] == "1" and rows[0]["best_other_caption"] == ""  # no caption of another


def test_command_line_ends_with_a_json_summary(pairs_table, tmp_path, capsys, model_cache):
    main([str(pairs_table.path), "--images-dir", str(pairs_table.root), "--out-dir", str(tmp_path), "--no-progress",
          "--num-workers", "0", "--outliers", "5", "--workspace", str(share_model_cache(tmp_path, model_cache))])
    printed = capsys.readouterr().out.strip().splitlines()
    assert "1 with a missing or unreadable image" in printed[-2]
    summary = json.loads(printed[-1])
    assert summary["model"]["spec"] == "demo" and len(summary["model"]["weights_sha256"]) == 64
    assert summary["model"]["backend"] in ("openvino", "torch") and summary["model"]["precision"] in ("fp32", "bf16")
    assert "centre crop 96x96" in summary["preprocessing"]["images"]
    assert "no prompt template" in summary["preprocessing"]["captions"]
    assert summary["wall_time_s"] > 0 and summary["peak_memory_mib"] > 0 and summary["outliers"] == 5
    for name in ("output.csv", "outliers.csv", "score_histogram.jpg", "image_captions.jpg", "similarity_matrix.jpg",
                 "report.html"):
        assert (tmp_path / name).stat().st_size > 0
    assert not (tmp_path / "suggestions.csv").exists() and not list(tmp_path.glob("*.partial"))


def test_command_line_says_what_is_wrong(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("photo,words\n")
    for argv, message in ([[str(bad)], "its columns are photo, words"],
                          [[str(bad), "--image-column", "photo", "--caption-column", "words"], "header but no rows"],
                          [[str(tmp_path)], "not a clip-retrieval embeddings folder"],
                          [[str(tmp_path / "none.csv")], "does not exist"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv + ["--no-progress"])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_video_rows_are_left_out_unless_asked(video_workspace, demo_encoder, tmp_path):
    settings, cuts = video_workspace
    video = "clips/three scenes.mp4"
    scene = f"{video}#t={cuts[1]:g},9"  # a scene as exports name it
    path = write_csv(tmp_path / "videos.csv", ["file", "text"], [
        ["pictures/purple cross.png", "a purple cross"], [video, "a red circle"], [scene, "a green star"],
        [scene, "a red circle"]])

    def scored(**extra) -> list[dict[str, str]]:
        options = ScoreOptions(images_dir=settings.dataset_path, out_dir=tmp_path / str(extra), progress=False,
                               **extra)
        score_captions(open_pairs(path), demo_encoder, 32, 0, options)
        return read_csv(tmp_path / str(extra) / "output.csv")

    left_out = scored()
    assert [r["error"] for r in left_out] == [""] + ["a video, left out (--videos scores its frame)"] * 3
    rows = scored(videos=True)
    assert [r["error"] for r in rows] == [""] * 4
    similarity = [float(r["similarity"]) for r in rows]
    assert similarity[1] > similarity[3] and similarity[2] > similarity[3]  # the frame at 0 s, at the cut to the star
