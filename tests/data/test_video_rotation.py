"""Phone videos: a portrait video stored on its side with a display rotation is sampled upright, with its
upright size, and its container's creation time is its capture time."""
from datetime import UTC, datetime

import pytest
from PIL import Image, ImageDraw

from lib.data.synthetic_video import write_video
from lib.data.videos import sample_frames


def red_over_blue() -> Image.Image:
    picture = Image.new("RGB", (240, 320), "blue")
    ImageDraw.Draw(picture).rectangle((0, 0, 240, 160), fill="red")
    return picture


@pytest.mark.parametrize("rotation", [-90, 90, 180])
def test_a_rotated_video_is_sampled_upright(tmp_path, rotation):
    path = tmp_path / "portrait.mp4"
    picture = red_over_blue() if rotation % 180 else red_over_blue().resize((320, 240))
    write_video(path, [(1.0, picture)], size=(320, 240), rotation=rotation)
    sampled = sample_frames(path)
    frame = sampled.frames[0]
    assert (sampled.width, sampled.height) == picture.size == frame.size
    top, bottom = frame.getpixel((frame.width // 2, 8)), frame.getpixel((frame.width // 2, frame.height - 8))
    assert top[0] > 200 > top[2] and bottom[2] > 200 > bottom[0]


def test_the_creation_time_is_read_and_a_clockless_one_is_not(tmp_path):
    dated, clockless = tmp_path / "dated.mp4", tmp_path / "clockless.mp4"
    write_video(dated, [(1.0, red_over_blue())], created="2024-06-01T10:20:30.000000Z")
    write_video(clockless, [(1.0, red_over_blue())], created="1970-01-01T00:00:00.000000Z")
    taken = datetime(2024, 6, 1, 10, 20, 30, tzinfo=UTC)
    assert sample_frames(dated).created_ns == int(taken.timestamp()) * 1_000_000_000
    assert sample_frames(clockless).created_ns is None
