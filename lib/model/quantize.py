"""int8 towers by NNCF's post-training quantization, and how faithful they stay to PyTorch fp32.

Calibration is a bundled generated set (photo-like pictures and drawn shapes, `generated_images`), the same
on every machine, so that the quantized IR is a function of the weights and this module's constants and can be
cached beside the f32 one. NNCF draws rich progress bars on stdout; a CLI's stdout is its own output, so they
are swallowed and one log line says what is happening instead.

Fidelity is what decides whether int8 may be used (lib/model/precision_choice.py): recall@10 of the int8
image tower's rankings against PyTorch fp32's, every held-out image a query against the others, and the
minimum cosine per image. The held-out images come from another seed than the calibration.

Two departures from NNCF's transformer defaults, measured on random:ViT-B/32 (AVX2, recall@10 on 200 held-out
pictures): SmoothQuant off (with 128 calibration images recall 0.963 -> 0.968, 14.8 -> 15.5 images/s) and the
patch embedding (the one Convolution) left in float (with 300: 0.963 -> 0.973). The demo model stays at
0.90 whatever the settings (its 128-d embeddings of drawn shapes sit close together), so auto leaves it float.
"""
from __future__ import annotations

import contextlib
import io
import logging
import random
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import openvino as ov

from lib.data.photos import photo_like
from lib.data.synthetic import COLOURS, SHAPES, draw_scene, random_scene

log = logging.getLogger(__name__)

CALIBRATION_IMAGES, CALIBRATION_SEED = 300, 1
CALIBRATION = {"set": "generated", "images": CALIBRATION_IMAGES, "seed": CALIBRATION_SEED, "version": 2}  # cache key
HELD_OUT_IMAGES, HELD_OUT_SEED = 128, 2
MIN_RECALL_AT_10 = 0.97  # int8 is used only where its rankings keep this much of fp32's
TEXT_INT8_MIN_COSINE = 0.999  # what an index built by one tower and queried by another needs
CALIBRATION_TEXTS = [f"{template} {colour} {shape}" for template in ("a photo of a", "a drawing of a", "one")
                     for colour in COLOURS for shape in SHAPES]


@dataclass(frozen=True)
class Fidelity:
    """How close a tower's embeddings stay to PyTorch fp32's on held-out inputs."""

    min_cosine: float
    recall_at_10: float

    @property
    def passes(self) -> bool:
        return self.recall_at_10 >= MIN_RECALL_AT_10

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def generated_images(transform: Any, count: int, seed: int) -> np.ndarray:
    """`count` preprocessed pictures, half photo-like and half drawn shapes on patterned grounds."""
    rng = random.Random(seed)
    pictures = [photo_like(320, 240, seed * 100_000 + i) if i % 2 else
                draw_scene(random_scene(rng.choice(sorted(COLOURS)), rng.choice(SHAPES), rng), rng, 160)
                for i in range(count)]
    return np.stack([transform(picture) for picture in pictures]).astype(np.float32)


def _quantize(model: ov.Model, samples: list[np.ndarray], what: str) -> ov.Model:
    import nncf  # imported only when int8 is asked for: it takes a second to import
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

    started = time.perf_counter()
    log.info("quantizing the %s to int8 on %d generated samples (once per model and machine's cache)", what,
             len(samples))
    nncf_log = logging.getLogger("nncf")
    level, nncf_log.level = nncf_log.level, logging.WARNING
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            quantized = nncf.quantize(
                model, nncf.Dataset(samples), subset_size=len(samples), model_type=nncf.ModelType.TRANSFORMER,
                ignored_scope=nncf.IgnoredScope(types=["Convolution"], validate=False),
                advanced_parameters=AdvancedQuantizationParameters(
                    smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=-1)))
    finally:
        nncf_log.setLevel(level)
    log.info("quantized the %s in %.1f s", what, time.perf_counter() - started)
    return quantized


def quantize_towers(vision: ov.Model, text: ov.Model, transform: Any, tokenizer: Any) -> tuple[ov.Model, ov.Model]:
    """Both towers in int8, calibrated on the bundled generated set (images) and CALIBRATION_TEXTS."""
    pixels = generated_images(transform, CALIBRATION_IMAGES, CALIBRATION_SEED)
    ids = [tokenizer([text], return_tensors="np")["input_ids"].astype(np.int64) for text in CALIBRATION_TEXTS]
    return (_quantize(vision, [pixels[i:i + 1] for i in range(len(pixels))], "image tower"),
            _quantize(text, ids, "text tower"))


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _top(rows: np.ndarray, k: int) -> np.ndarray:
    similarity = rows @ rows.T
    np.fill_diagonal(similarity, -np.inf)  # an image is not its own neighbour
    return np.argsort(-similarity, axis=1, kind="stable")[:, :k]


def fidelity(got: np.ndarray, expected: np.ndarray, k: int = 10) -> Fidelity:
    """Minimum cosine per row, and recall@k of `got`'s neighbour rankings against `expected`'s."""
    got, expected = _unit(got.astype(np.float64)), _unit(expected.astype(np.float64))
    found, truth = _top(got, k), _top(expected, k)
    recall = np.mean([len(set(a) & set(b)) / k for a, b in zip(found, truth, strict=True)])
    return Fidelity(round(min_cosine(got, expected), 6), round(float(recall), 4))


def min_cosine(got: np.ndarray, expected: np.ndarray) -> float:
    return float((_unit(got.astype(np.float64)) * _unit(expected.astype(np.float64))).sum(1).min())
