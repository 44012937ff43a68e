"""Words in pictures: RapidOCR (PP-OCRv6 small detection and recognition, ONNX, inside its wheel) run locally.

Detection runs on the picture shrunk to DETECTION_SIDE on its longer side; recognition only on the boxes it
finds, cropped from the picture read at up to READ_SIDE, so a photo without text costs one detection. No
orientation classifier: signs turned by up to 15 degrees read without it, and it costs a third more.

Measured on 2 cores (AMD EPYC, AVX512-BF16, 2026-12-02; 800x600 photo-like JPEGs with signs, bench.ocr_speed):
OpenVINO runs both models 2.5-3.0x faster than onnxruntime (photos without words 28.8 vs 11.2 images/s at 640
px, 2 threads), so it is the engine when importable, with its LATENCY hint (screenshots 2.06 vs 1.64 images/s
with none, photos 25.2 vs 24.1; THROUGHPUT is 0.6x). One process with both threads reads 1.1-1.5x what two of
one thread each do, so a build has one reader process with every core's thread by default. Detecting at 640 px
on the longer side rather than RapidOCR's default (736 px on the shorter side, an upscale for 800x600) is 2.1x
faster; word recall stays 0.97-1.00 from 10 to 48 px, where 480 px (1.4x faster again) reads 0.87 of the words
of 10 px (bench.ocr_speed's tables in docs/benchmarks.md).

The build reads in processes of their own (lib/ingest/ocr_pool.py, Ray actors): in the tests, RapidOCR's
OpenVINO models loaded in a process that also ran the CLIP encoder's OpenVINO crashed it later (a segfault
with no Python traceback), so nothing loads both in one process.

Which boxes are kept (KEEP_CONFIDENCE, SHORT_CONFIDENCE), calibrated on 80 photos without words and 80 with
two signs each (12-40 px words): real words scored 0.911 and up (156 boxes); the 72 stray boxes read in
photos without words were all of one to three characters ('9' 0.909, '53' 0.83, single CJK characters up to
0.85). A box is kept at >= 0.85, and one of fewer than three letters or digits only at >= 0.95: no stray box
and every real word passed.
"""
from __future__ import annotations

import importlib.util
import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from lib.data.dataset_files import open_indexed
from lib.data.images import decode_image
from lib.errors import ClipSearchError, NotFoundError, UnreadableImageError
from lib.store.records import ImageRecord, ImageWords, TextBox

log = logging.getLogger(__name__)

DETECTION_SIDE = 640
READ_SIDE = 2000  # RapidOCR's own bound on the picture it crops boxes from (Global.max_side_len)
KEEP_CONFIDENCE = 0.85
SHORT_CONFIDENCE = 0.95
SHORT_LETTERS = 3
ENGINES = ("openvino", "onnxruntime")
ENGINE_MODULES = {"openvino": "openvino", "onnxruntime": "onnxruntime"}


class OcrTimeout(ClipSearchError):
    """Reading one picture took more CPU time than its limit."""


def installed_engines() -> list[str]:
    """The engines RapidOCR can run here, fastest first."""
    return [name for name in ENGINES if importlib.util.find_spec(ENGINE_MODULES[name]) is not None]


def choose_engine(asked: str) -> str:
    """'auto': the fastest installed engine; else the one asked for, which must be installed."""
    found = installed_engines()
    if asked == "auto":
        if not found:
            raise ClipSearchError("OCR needs openvino or onnxruntime; install requirements.txt")
        return found[0]
    if asked not in found:
        raise ClipSearchError(f"OCR engine {asked!r} is not installed here (installed: {', '.join(found) or 'none'})")
    return asked


def kept(text: str, confidence: float) -> bool:
    """Whether a recognised box is words rather than a stray reading of texture (see the module docstring)."""
    letters = sum(ch.isalnum() for ch in text)
    return letters > 0 and confidence >= (SHORT_CONFIDENCE if letters < SHORT_LETTERS else KEEP_CONFIDENCE)


@dataclass(frozen=True)
class OcrOptions:
    engine: str = "auto"
    detection_side: int = DETECTION_SIDE
    detection_limit: str = "max"  # detection_side bounds the longer side; "min": the shorter (RapidOCR's default)
    threads: int = 1
    time_limit_s: float = 30.0  # CPU seconds for one picture (0: no limit)


@contextmanager
def cpu_time_limit(seconds: float) -> Iterator[None]:
    """Raise OcrTimeout once this process has spent `seconds` of CPU time inside the block (checked by Python
    between the calls into the models, so a single model call finishes first). Only in the main thread,
    where signals are delivered; elsewhere no limit.

    Whatever the block raises once the limit has passed is the limit: code that catches an exception and
    raises its own turned it into something else (the limit landing in a class body, during an import of
    Pillow's GIF plugin, came out as RuntimeError "Error calling __set_name__", failing a full test run).
    """
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return
    message = f"OCR ran past its limit of {seconds:g} CPU seconds"
    passed: list[bool] = []

    def expired(signum: int, frame: Any) -> None:
        passed.append(True)
        raise OcrTimeout(message)

    previous = signal.signal(signal.SIGPROF, expired)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    except OcrTimeout:
        raise
    except Exception as err:
        if passed:
            raise OcrTimeout(message) from err
        raise
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)


class OcrReader:
    """One RapidOCR pipeline (models loaded on first use), reading pictures and indexed files."""

    def __init__(self, options: OcrOptions = OcrOptions()) -> None:
        self.options = options
        self.engine = choose_engine(options.engine)
        self._ocr: Any = None

    def _pipeline(self) -> Any:
        if self._ocr is None:
            from rapidocr import EngineType, RapidOCR

            kind = EngineType.OPENVINO if self.engine == "openvino" else EngineType.ONNXRUNTIME
            threads = max(1, self.options.threads)
            self._ocr = RapidOCR(params={
                "Det.engine_type": kind, "Rec.engine_type": kind, "Cls.engine_type": kind, "Global.use_cls": False,
                "Det.limit_side_len": self.options.detection_side, "Det.limit_type": self.options.detection_limit,
                "Global.max_side_len": READ_SIDE, "Global.text_score": 0.0, "Global.log_level": "error",
                "EngineConfig.onnxruntime.intra_op_num_threads": threads,
                "EngineConfig.onnxruntime.inter_op_num_threads": 1,
                "EngineConfig.openvino.inference_num_threads": threads,
                "EngineConfig.openvino.performance_hint": "LATENCY"})
        return self._ocr

    def read_picture(self, picture: Image.Image, scale: float = 1.0) -> tuple[TextBox, ...]:
        """The kept boxes of an RGB picture, their corners multiplied by `scale` (the size it was read at to the
        picture's own), top to bottom."""
        found = self._pipeline()(picture.convert("RGB"), use_det=True, use_rec=True)
        boxes = []
        corners_of = getattr(found, "boxes", None)
        for corners, text, confidence in zip(() if corners_of is None else corners_of,
                                             getattr(found, "txts", None) or (), getattr(found, "scores", None) or (),
                                             strict=False):
            text = str(text).strip()
            if kept(text, float(confidence)):
                box = tuple((round(float(x) * scale), round(float(y) * scale)) for x, y in corners)
                boxes.append(TextBox(text, float(confidence), box))
        return tuple(boxes)

    def read(self, source: Path | Any) -> tuple[TextBox, ...]:
        """The boxes of a picture file or file object, in the pixels of the upright picture; raises
        UnreadableImageError for what is not a picture."""
        decoded = decode_image(source, max_side=READ_SIDE)
        return self.read_picture(decoded.image, decoded.size[0] / max(1, decoded.image.width))

    def read_indexed(self, root: Path, record: ImageRecord) -> ImageWords:
        """The words of an indexed image, never an exception: a file gone, changed, unreadable, or over the time
        limit gives an ImageWords with the reason and no boxes."""
        try:
            with open_indexed(root, record) as file, cpu_time_limit(self.options.time_limit_s):
                return ImageWords(record.id, self.read(file))
        except (NotFoundError, UnreadableImageError, OcrTimeout) as err:
            return ImageWords(record.id, (), str(err) or type(err).__name__)
        except Exception as err:  # noqa: BLE001 - whatever the models raise, the build goes on without this text
            log.warning("OCR failed on image %d: %r", record.id, err)
            return ImageWords(record.id, (), f"OCR failed: {type(err).__name__}: {err}"[:300])
