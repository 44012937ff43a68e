"""Open any image Pillow reads as a safe RGB picture, or say exactly why it cannot be used."""
from __future__ import annotations

import functools
import io
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from lib.errors import UnreadableImageError
from lib.store.records import CaptureFacts

DEFAULT_MAX_PIXELS = 64_000_000
EXIF_IFD, DATE_TIME_ORIGINAL, DATE_TIME, MAKE, MODEL = 0x8769, 36867, 306, 271, 272
TURNING_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that swap width and height


@functools.cache
def register_formats() -> None:
    """Let Pillow open HEIC/HEIF (phone photos) through pillow-heif; AVIF is Pillow's own. Once per process,
    on first use rather than at import, so that importing this module changes nothing global."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:  # without it, HEIC files are reported as not images Pillow can read
        return
    register_heif_opener()


class ExifFacts(NamedTuple):
    """What a file's EXIF header says of the photo: when it was taken (its clock read as UTC), by which camera,
    and its orientation (1: upright, the default)."""

    taken_ns: int | None = None
    camera: str = ""
    orientation: int = 1

    def captured(self, mtime_ns: int) -> CaptureFacts:
        """The catalog's capture facts: the EXIF time, else the file's modification time, and which one."""
        if self.taken_ns is None:
            return CaptureFacts(mtime_ns, "mtime", self.camera, self.orientation)
        return CaptureFacts(self.taken_ns, "exif", self.camera, self.orientation)


class DecodedImage(NamedTuple):
    """A decoded picture, the upright size of the file's full-resolution image and its EXIF facts (what the
    catalog records)."""

    image: Image.Image
    size: tuple[int, int]
    facts: ExifFacts = ExifFacts()


def _to_rgb(image: Image.Image) -> Image.Image:
    """Flatten alpha onto white and bring 16-bit, float, palette and CMYK pictures to 8-bit RGB."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        pixels = np.asarray(image, dtype=np.float64)
        low, high = float(pixels.min()), float(pixels.max())
        scaled = (pixels - low) * (255.0 / (high - low)) if high > low else np.zeros_like(pixels)
        image = Image.fromarray(scaled.astype(np.uint8), "L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def pixel_count(data: bytes) -> int | None:
    """Width x height from the header alone (nothing is decoded); None for what Pillow cannot identify or
    refuses to open (a decompression bomb): open_image says why."""
    register_formats()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError):
        return None
    return width * height


def open_image(source: str | Path | bytes | BinaryIO, max_pixels: int = DEFAULT_MAX_PIXELS,
               max_side: int | None = None) -> Image.Image:
    """Decode the first frame of an image file, apply its EXIF orientation and return it as RGB.

    With `max_side`, the picture is shrunk to fit in max_side x max_side (a JPEG is decoded at a reduced
    scale to begin with), so that holding many of them, as a request with many uploads does, costs little.
    Raises UnreadableImageError for empty, truncated, non-image and oversized (decompression bomb) input.
    """
    return decode_image(source, max_pixels, max_side=max_side).image


def _upright_size(image: Image.Image, orientation: int) -> tuple[int, int]:
    width, height = image.size
    return (height, width) if orientation in TURNING_ORIENTATIONS else (width, height)


def decode_image(source: str | Path | bytes | BinaryIO, max_pixels: int = DEFAULT_MAX_PIXELS,
                 min_side: int | None = None, max_side: int | None = None) -> DecodedImage:
    """open_image, with JPEG draft mode when `min_side` is given: libjpeg decodes at 1/2, 1/4 or 1/8 scale
    while both sides stay >= min_side, 2.3x (640x480) to 6.7x (12 MP) cheaper for CLIP's resize to come.

    Raises UnreadableImageError for empty, truncated, non-image and oversized (decompression bomb) input.
    """
    register_formats()
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise UnreadableImageError(
                        f"image is {width}x{height} pixels, over the limit of {max_pixels:,} "
                        "(decompression bomb guard)")
                image.seek(0)
                facts = exif_facts(image)
                size = _upright_size(image, facts.orientation)
                if min_side and image.format == "JPEG":
                    image.draft(image.mode, (min_side, min_side))
                elif max_side:
                    image.draft("RGB", (max_side, max_side))
                image.load()
                picture = _to_rgb(ImageOps.exif_transpose(image))
                if max_side:
                    picture.thumbnail((max_side, max_side))
                return DecodedImage(picture, size, facts)
    except UnreadableImageError:
        raise
    except FileNotFoundError:
        raise UnreadableImageError("file not found") from None
    except UnidentifiedImageError:
        raise UnreadableImageError("not an image Pillow can read (or an empty file)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise UnreadableImageError(f"image is over the pixel limit (decompression bomb guard): {err}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise UnreadableImageError(f"damaged or truncated image: {err}") from None


def _tag_text(value: object) -> str:
    return (value.decode("latin-1") if isinstance(value, bytes) else str(value)).strip("\x00 ")


def _taken_ns(exif: Image.Exif) -> int | None:
    text = exif.get_ifd(EXIF_IFD).get(DATE_TIME_ORIGINAL) or exif.get(DATE_TIME)
    try:
        taken = datetime.strptime(_tag_text(text)[:19], "%Y:%m:%d %H:%M:%S") if text else None
    except ValueError:  # a blank or malformed date ('    :  :     :  :  ')
        return None
    return None if taken is None else int(taken.replace(tzinfo=UTC).timestamp()) * 1_000_000_000


def _camera(exif: Image.Exif) -> str:
    """The Model, with the Make before it unless the Model already starts with the Make (or its first word:
    'NIKON CORPORATION' + 'NIKON D750' is 'NIKON D750')."""
    make, model = _tag_text(exif.get(MAKE, "")), _tag_text(exif.get(MODEL, ""))
    brand = make.split()[0].lower() if make.split() else ""
    if not model or not brand or model.lower().startswith(brand):
        return model or make
    return f"{make} {model}"


def exif_facts(image: Image.Image) -> ExifFacts:
    """The EXIF facts of an open image (read from its header; nothing is decoded)."""
    exif = image.getexif()
    orientation = exif.get(ExifTags.Base.Orientation, 1)
    return ExifFacts(_taken_ns(exif), _camera(exif), orientation if orientation in range(1, 9) else 1)


def read_exif_facts(source: Path | BinaryIO) -> ExifFacts | None:
    """exif_facts of a file, reading its header only; None for a file that cannot be read or is not an image."""
    register_formats()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(source) as image:
                return exif_facts(image)
    except (OSError, SyntaxError, ValueError, EOFError, UnidentifiedImageError, Image.DecompressionBombError):
        return None


def capture_time_ns(path: Path | BinaryIO) -> int | None:
    """When the picture was taken (EXIF DateTimeOriginal, else DateTime), in ns since the epoch, its clock read
    as UTC; None for a file without one or that cannot be read. Reads the header, not the pixels."""
    facts = read_exif_facts(path)
    return None if facts is None else facts.taken_ns
