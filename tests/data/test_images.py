"""Every format Pillow reads opens as RGB; every bad file raises UnreadableImageError with a reason."""
import numpy as np
import pytest
from PIL import Image

from lib.data.datasets import image_extensions
from lib.data.images import (
    ExifFacts,
    capture_time_ns,
    decode_image,
    open_image,
    pixel_count,
    read_exif_facts,
    register_formats,
)
from lib.errors import UnreadableImageError
from tests.helpers import bomb_png, encoded

RED = Image.new("RGB", (40, 30), (255, 0, 0))


@pytest.mark.parametrize("name, data", [
    ("jpeg", encoded(RED, "JPEG")),
    ("png alpha", encoded(Image.new("RGBA", (40, 30), (255, 0, 0, 255)), "PNG")),
    ("palette", encoded(RED.convert("P"), "PNG")),
    ("grayscale", encoded(RED.convert("L"), "PNG")),
    ("cmyk", encoded(RED.convert("CMYK"), "JPEG")),
    ("16-bit", encoded(Image.fromarray(np.full((30, 40), 40000, dtype=np.uint16)), "PNG")),
    ("webp", encoded(RED, "WEBP")),
    ("gif", encoded(RED.convert("P"), "GIF", save_all=True, append_images=[Image.new("P", (40, 30))])),
    ("bmp", encoded(RED, "BMP")),
    ("tiff", encoded(RED, "TIFF")),
])
def test_formats_open_as_rgb(name, data):
    image = open_image(data)
    assert image.mode == "RGB" and image.size == (40, 30)


@pytest.mark.parametrize("fmt, extension", [("HEIF", ".heic"), ("AVIF", ".avif")])
def test_phone_formats_open_as_rgb_and_are_found_by_extension(fmt, extension):
    register_formats()  # pillow-heif's encoder, to make the test file
    image = open_image(encoded(RED, fmt, quality=90))
    assert image.mode == "RGB" and image.size == (40, 30)
    red, green, blue = image.getpixel((20, 15))
    assert red > 200 and green < 60 and blue < 60
    assert extension in image_extensions()


def test_transparent_pixels_become_white():
    image = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert open_image(encoded(image, "PNG")).getpixel((0, 0)) == (255, 255, 255)


def test_exif_orientation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    assert open_image(encoded(RED, "JPEG", exif=exif)).size == (30, 40)


@pytest.mark.parametrize("data, reason", [
    (b"", "not an image"),
    (b"just some text, not a picture", "not an image"),
    (encoded(RED, "PNG")[:60], "truncated"),
    (encoded(RED, "JPEG")[:200], "truncated"),
])
def test_bad_files_say_why(data, reason):
    with pytest.raises(UnreadableImageError, match=reason):
        open_image(data)


def test_decompression_bomb_is_refused_before_decoding():
    # A PNG header that claims 100000 x 100000 pixels; the guard must fire on the header alone.
    with pytest.raises(UnreadableImageError, match="decompression bomb guard"):
        open_image(bomb_png(100_000, 100_000))
    with pytest.raises(UnreadableImageError, match="over the limit"):
        open_image(encoded(RED, "PNG"), max_pixels=100)


def test_missing_file(tmp_path):
    with pytest.raises(UnreadableImageError, match="not found"):
        open_image(tmp_path / "nope.jpg")


def test_capture_time_from_exif_date_time_original_else_date_time(tmp_path):
    def saved(name: str, tags: dict) -> object:
        exif = Image.Exif()
        for tag, value in tags.items():
            (exif.get_ifd(0x8769) if tag == 36867 else exif)[tag] = value
        Image.new("RGB", (8, 8)).save(tmp_path / name, exif=exif)
        return capture_time_ns(tmp_path / name)

    assert saved("both.jpg", {36867: "2001:02:03 04:05:06", 306: "2020:01:01 00:00:00"}) == 981173106 * 10**9
    assert saved("edited.png", {306: "2020:01:01 00:00:00"}) == 1577836800 * 10**9
    assert saved("none.jpg", {}) is None and saved("blank.jpg", {36867: "    :  :     :  :  "}) is None
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    assert capture_time_ns(tmp_path / "broken.jpg") is None and capture_time_ns(tmp_path / "gone.jpg") is None


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_max_side_shrinks_while_decoding(fmt):
    big = Image.linear_gradient("L").resize((3000, 2000)).convert("RGB")
    image = open_image(encoded(big, fmt), max_side=512)
    assert image.size == (512, 341) and image.mode == "RGB"
    assert open_image(encoded(big, fmt)).size == (3000, 2000)


def test_pixel_count_reads_only_the_header():
    assert pixel_count(bomb_png(7_000, 7_000)) == 49_000_000  # counted without decoding
    assert pixel_count(bomb_png(50_000, 50_000)) is None  # Pillow refuses to open it; open_image says why
    assert pixel_count(encoded(Image.new("RGB", (30, 20)), "JPEG")) == 600
    assert pixel_count(b"not an image") is None and pixel_count(b"") is None


def exif_jpeg(path, tags: dict, size=(8, 6)):
    """A JPEG whose EXIF holds `tags` (DateTimeOriginal, 36867, goes into the EXIF IFD, the rest into IFD0)."""
    exif = Image.Exif()
    for tag, value in tags.items():
        (exif.get_ifd(0x8769) if tag == 36867 else exif)[tag] = value
    Image.new("RGB", size, "red").save(path, exif=exif)
    return path


@pytest.mark.parametrize("tags, camera", [
    ({271: "Canon", 272: "Canon EOS 5D"}, "Canon EOS 5D"),
    ({271: "NIKON CORPORATION", 272: "NIKON D750"}, "NIKON D750"),
    ({271: "Apple", 272: "iPhone 12"}, "Apple iPhone 12"),
    ({272: "X100V\x00"}, "X100V"),
    ({271: "FUJIFILM"}, "FUJIFILM"),
    ({}, ""),
])
def test_exif_facts_name_the_camera(tmp_path, tags, camera):
    assert read_exif_facts(exif_jpeg(tmp_path / "c.jpg", tags)).camera == camera


def test_exif_facts_come_with_the_decoded_picture(tmp_path):
    path = exif_jpeg(tmp_path / "turned.jpg", {274: 6, 36867: "2019:07:14 15:16:17", 306: "2020:01:01 00:00:00"})
    decoded = decode_image(path.read_bytes())
    assert decoded.size == (6, 8) and decoded.facts == ExifFacts(1563117377 * 10**9, "", 6)
    assert read_exif_facts(path) == decoded.facts
    plain = decode_image(exif_jpeg(tmp_path / "plain.jpg", {274: 42}).read_bytes()).facts
    assert plain == ExifFacts(None, "", 1)  # no date; an orientation out of range is read as upright
    assert plain.captured(123).captured_from == "mtime" and plain.captured(123).captured_ns == 123
    assert decoded.facts.captured(123).captured_from == "exif"
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    assert read_exif_facts(tmp_path / "broken.jpg") is None
