"""Small file makers shared by the tests."""
import io
import struct
import zlib
from pathlib import Path

from PIL import Image


def encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def bomb_png(width: int, height: int) -> bytes:
    """A valid tiny PNG whose header claims width x height pixels (a decompression bomb's header)."""
    png = encoded(Image.new("L", (1, 1)), "PNG")
    ihdr = b"IHDR" + struct.pack(">II", width, height) + png[24:29]
    return png[:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + png[33:]


def share_model_cache(workspace: Path, model_cache: Path) -> Path:
    """`workspace` with its converted models (cache/openvino) linked to the session's, so that a build, a server
    or a Ray actor there reads what the session has converted instead of converting again; returns it."""
    (model_cache / "openvino").mkdir(parents=True, exist_ok=True)
    (workspace / "cache").mkdir(parents=True, exist_ok=True)
    link = workspace / "cache" / "openvino"
    if not link.exists():
        link.symlink_to(model_cache / "openvino", target_is_directory=True)
    return workspace
