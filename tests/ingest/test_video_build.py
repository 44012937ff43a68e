"""Videos in a build: a row and a vector per scene with its times, bad videos skipped with their reason, and
incremental runs that never read an unchanged video again (but read a changed one whole)."""
import random

import numpy as np
import pytest

import lib.model.video_decode
from lib.data.datasets import detect_layout
from lib.data.synthetic import Scene, draw_scene
from lib.data.synthetic_video import SHOWN, write_video
from lib.store.catalog import CATALOG_NAME, Catalog
from lib.store.index_files import read_index, vectors_of
from tests.ingest.test_image_index import build, settings_for


def catalog_of(settings) -> Catalog:
    return Catalog(settings.indexes_dir / CATALOG_NAME)


def vectors(settings, dataset: str) -> dict[int, np.ndarray]:
    catalog = catalog_of(settings)
    found = {}
    for partition in catalog.partitions(dataset):
        ids, stored = vectors_of(read_index(settings.indexes_dir / partition.index_file, partition.index_sha256))
        found.update({int(i): v for i, v in zip(ids, stored, strict=True)})
    return found


def pictures(*shown, seconds: float = 2.0) -> list:
    rng = random.Random(1)
    return [(seconds, draw_scene(Scene(colour, shape, 1, "large", "plain"), rng, 96)) for colour, shape in shown]


def test_each_scene_is_a_row_with_its_times_and_the_file_facts(video_workspace):
    settings, cuts = video_workspace
    catalog = catalog_of(settings)
    rows = sorted(catalog.images("mixed"), key=lambda r: (r.path, r.scene))
    scenes = [r for r in rows if r.media == "video"]
    assert [r.path for r in rows if r.media == "image"] == ["pictures/purple cross.png", "pictures/yellow triangle.png"]
    assert [r.scene for r in scenes] == [0, 1, 2] and {r.path for r in scenes} == {"clips/three scenes.mp4"}
    assert scenes[0].video_start == 0.0 and scenes[-1].video_end == pytest.approx(9.0, abs=0.1)
    assert all(abs(s.video_start - cut) <= 1.0 for s, cut in zip(scenes[1:], cuts, strict=True))
    assert all(a.video_end == b.video_start for a, b in zip(scenes[:-1], scenes[1:], strict=True))
    assert all(s.video_start <= s.frame_s < s.video_end for s in scenes)
    assert {(s.width, s.height, s.sha256, s.captured_from) for s in scenes} == {(320, 240, scenes[0].sha256, "mtime")}
    assert len({s.perceptual_hash for s in scenes}) == 3  # each signature is its own frame's
    assert catalog.same_content("mixed") == [] and catalog.same_content("mixed", videos=False) == []
    skipped = catalog.skipped("mixed")
    assert list(skipped) == ["clips/truncated.mp4"]
    assert skipped["clips/truncated.mp4"].reason.startswith("damaged, truncated or unsupported video")


def test_the_words_of_a_scene_find_its_vector(video_workspace, demo_encoder):
    settings, cuts = video_workspace
    rows = {r.id: r for r in catalog_of(settings).images("mixed")}
    stored = vectors(settings, "mixed")
    ids = sorted(stored)
    matrix = np.stack([stored[i] for i in ids])
    for n, (colour, shape) in enumerate(SHOWN):
        best = rows[ids[int(np.argmax(matrix @ demo_encoder.encode_texts([f"a photo of a {colour} {shape}."])[0]))]]
        assert (best.media, best.scene) == ("video", n)
        assert abs(best.video_start - ([0.0] + cuts)[n]) <= 1.0


def test_an_unchanged_video_is_never_read_again(video_workspace, demo_encoder, monkeypatch):
    settings, _ = video_workspace
    before = {(r.id, r.scene) for r in catalog_of(settings).images("mixed")}

    def refuse(*args, **kwargs):
        raise AssertionError("an unchanged video was decoded")

    monkeypatch.setattr(lib.model.video_decode, "sample_frames", refuse)
    report = build(settings, demo_encoder)
    assert (report.encoded, report.unchanged, report.added) == (0, 3, 0)
    assert list(report.skipped) == ["clips/truncated.mp4"]  # remembered, not read again either
    assert {(r.id, r.scene) for r in catalog_of(settings).images("mixed")} == before


def test_a_changed_video_is_read_again_whole(tmp_path, demo_encoder):
    root = tmp_path / "videos"
    root.mkdir()
    write_video(root / "clip.mp4", pictures(("red", "circle"), ("blue", "square")))
    settings = settings_for(tmp_path / "workspace", root, calibration_images=0)
    first = build(settings, demo_encoder)
    assert (first.videos, first.scenes) == (1, 2) and "1 of them videos, cut into 2 scenes" in first.summary()
    old = {r.id for r in catalog_of(settings).images("test")}
    write_video(root / "clip.mp4", pictures(*SHOWN, seconds=3.0))
    second = build(settings, demo_encoder)
    assert (second.changed, second.scenes) == (1, 3)
    rows = catalog_of(settings).images("test")
    assert [r.scene for r in rows] == [0, 1, 2] and not old & {r.id for r in rows}
    assert set(vectors(settings, "test")) == {r.id for r in rows}  # the old scenes' vectors left with their rows
    (root / "clip.mp4").unlink()
    assert build(settings, demo_encoder).removed == 1 and catalog_of(settings).images("test") == []


def test_videos_side_by_side_each_get_their_own_scenes(tmp_path, demo_encoder):
    root = tmp_path / "videos"
    root.mkdir()
    write_video(root / "a.mp4", pictures(("red", "circle"), ("blue", "square")))
    write_video(root / "b.mp4", pictures(*SHOWN))
    pictures(("yellow", "triangle"))[0][1].save(root / "c.png")
    report = build(settings_for(tmp_path / "workspace", root, calibration_images=0), demo_encoder)
    settings = settings_for(tmp_path / "workspace", root)
    assert (report.encoded, report.videos, report.scenes) == (3, 2, 5)
    rows = catalog_of(settings).images("test")
    assert sorted((r.path, r.scene) for r in rows) == [("a.mp4", 0), ("a.mp4", 1), ("b.mp4", 0), ("b.mp4", 1),
                                                       ("b.mp4", 2), ("c.png", -1)]
    assert set(vectors(settings, "test")) == {r.id for r in rows} and len({r.id for r in rows}) == 6


def test_a_video_past_the_time_limit_is_skipped_and_the_build_goes_on(tmp_path, demo_encoder):
    root = tmp_path / "videos"
    root.mkdir()
    write_video(root / "slow.mp4", pictures(("red", "circle")))
    pictures(("blue", "square"))[0][1].save(root / "still.png")
    report = build(settings_for(tmp_path / "workspace", root, calibration_images=0, video_time_limit=1e-6),
                   demo_encoder)
    assert report.encoded == 1 and "longer than the limit" in report.skipped["slow.mp4"]


def test_videos_at_the_top_of_a_folder_make_it_flat(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "holiday.MOV").write_bytes(b"")
    assert detect_layout(tmp_path) == "flat"


def test_an_export_names_each_scene_by_its_span(video_workspace, tmp_path):
    import pyarrow.parquet as pq

    from lib.ingest.export import export_dataset

    settings, cuts = video_workspace
    assert export_dataset(settings, "mixed", tmp_path / "out", progress=False) == 5
    rows = pq.read_table(next((tmp_path / "out" / "metadata").glob("*.parquet"))).to_pylist()
    scenes = sorted((r for r in rows if r["video_start"] is not None), key=lambda r: r["video_start"])
    assert [r["image_path"].split("#t=")[0] for r in scenes] == ["clips/three scenes.mp4"] * 3
    assert [r["image_path"].split("#t=")[1] for r in scenes] == [
        f"{r['video_start']:g},{r['video_end']:g}" for r in scenes]
    assert all(abs(s["video_start"] - cut) <= 1.0 for s, cut in zip(scenes[1:], cuts, strict=True))
    pictures = [r for r in rows if r["video_start"] is None]
    assert sorted(r["image_path"] for r in pictures) == ["pictures/purple cross.png", "pictures/yellow triangle.png"]
    assert all(r["video_end"] is None for r in pictures)
