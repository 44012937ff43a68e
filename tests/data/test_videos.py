"""Frames sampled from videos (keyframes where they are dense, every frame's decoder where they are not), and
scenes cut where the embedding changes, on videos PyAV writes here with cuts at known times."""
import random

import pytest

from lib.data.synthetic import Scene as Drawn
from lib.data.synthetic import draw_scene
from lib.data.synthetic_video import write_video
from lib.data.video_scenes import scenes_of
from lib.data.videos import UnreadableVideoError, is_video, sample_frames

SHOWN = (("red", "circle"), ("blue", "square"), ("green", "star"))


def scene_pictures(seconds: float = 3.0) -> list:
    rng = random.Random(5)
    return [(seconds, draw_scene(Drawn(colour, shape, 1, "large", "plain"), rng, 96)) for colour, shape in SHOWN]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "three scenes.mp4"
    return path, write_video(path, scene_pictures(), keyframe_every_s=1.0)


def test_dense_keyframes_are_sampled_about_once_a_second(clip):
    path, cuts = clip
    sampled = sample_frames(path)
    assert cuts == [3.0, 6.0] and sampled.keyframes_only
    assert abs(sampled.duration_s - 9.0) < 0.1 and (sampled.width, sampled.height) == (320, 240)
    assert 8 <= len(sampled.times) <= 12 and sampled.times == sorted(sampled.times) and sampled.times[0] == 0.0
    assert all(frame.size == (320, 240) for frame in sampled.frames)  # shrunk to SIDE, never enlarged
    assert sampled.frames[0].getpixel((170, 128)) != sampled.frames[-1].getpixel((170, 128))


def test_sparse_keyframes_are_decoded_whole(tmp_path):
    path = tmp_path / "long gop.mp4"
    write_video(path, scene_pictures(4.0), keyframe_every_s=10.0)  # x264 adds keyframes at the cuts only
    sampled = sample_frames(path)
    assert not sampled.keyframes_only
    assert [round(t) for t in sampled.times] == list(range(12))
    assert sample_frames(path, side=120).frames[0].size == (160, 120)


def test_scenes_start_within_a_second_of_the_cuts(clip, demo_encoder):
    path, cuts = clip
    sampled = sample_frames(path)
    vectors = demo_encoder.encode_images(sampled.frames)
    scenes = scenes_of(sampled.times, vectors, sampled.duration_s)
    assert len(scenes) == 3
    assert all(abs(scene.start_s - cut) <= 1.0 for scene, cut in zip(scenes[1:], cuts, strict=True))
    assert scenes[0].start_s == 0.0 and scenes[-1].end_s == pytest.approx(9.0, abs=0.1)
    texts = demo_encoder.encode_texts([f"a photo of a {colour} {shape}." for colour, shape in SHOWN])
    best = (texts @ vectors[[scene.frame for scene in scenes]].T).argmax(axis=1)
    assert best.tolist() == [0, 1, 2]  # each scene's frame is the one its words find


def test_bad_videos_are_refused_with_a_reason(tmp_path, clip):
    path, _ = clip
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(path.read_bytes()[:2000])
    for bad, reason in ((truncated, "damaged, truncated or unsupported"), (tmp_path / "none.mp4", "not found")):
        with pytest.raises(UnreadableVideoError, match=reason):
            sample_frames(bad)
    not_video = tmp_path / "text.mp4"
    not_video.write_text("hello")
    with pytest.raises(UnreadableVideoError):
        sample_frames(not_video)
    with pytest.raises(UnreadableVideoError, match="longer than the limit"):
        sample_frames(path, time_limit_s=1e-9)
    assert is_video("a/B.MOV") and not is_video("a/b.jpg")
