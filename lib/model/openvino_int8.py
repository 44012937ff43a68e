"""OpenVINO's int8 towers and the auto choice of precision, on top of the cached f32 IR.

The int8 IR lives inside the f32 IR's cache folder (so it is keyed by the same weights, config and versions)
under a name that digests the calibration and NNCF's version. Quantizing needs the PyTorch model once, to
check that the int8 text tower agrees with fp32 (TEXT_INT8_MIN_COSINE); otherwise the text tower keeps
computing in float and only the image tower, which sets a build's speed, is int8.

Quantizing and measuring compile models, and a process that has compiled an OpenVINO model hangs its forked
children when they compile (seen here: gunicorn's preloading master would hang every worker). So both run in
a spawned child process that writes the cache, and the caller only reads it back. Only where there is no
cache folder to hand results over does `--precision int8` quantize in the caller's own process.
"""
from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import torch

import lib.model.openvino_backend as backend
import lib.model.precision_choice as precision_choice
import lib.model.quantize as quantize

log = logging.getLogger(__name__)


def int8_folder(folder: Path) -> Path:
    import nncf

    key = json.dumps({**quantize.CALIBRATION, "nncf": nncf.__version__}, sort_keys=True)
    return folder / f"int8-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def _text_cosine(text8: ov.Model, clip: Any, tokenizer: Any) -> float:
    ids = tokenizer(backend.PROBE_TEXTS, padding=True, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expected = backend.Tower(clip.text_model, clip.text_projection, "input_ids")(ids).numpy()
    compiled = ov.Core().compile_model(text8, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    got = compiled.create_infer_request().infer({"input_ids": ids.numpy()}, share_inputs=False)[0]
    return round(quantize.min_cosine(got, expected), 6)


def _read_int8(target: Path) -> tuple[ov.Model, ov.Model, dict[str, Any]] | None:
    if not (target / "meta.json").is_file():
        return None
    core = ov.Core()
    return (core.read_model(target / "vision.xml"), core.read_model(target / "text.xml"),
            json.loads((target / "meta.json").read_text()))


def int8_towers(checkpoint: Any, folder: Path | None, vision: ov.Model,
                text: ov.Model) -> tuple[ov.Model, ov.Model, dict[str, Any]]:
    """The int8 towers and whether the text one agrees with fp32: read from the cache, or quantized (in a
    child process where there is a cache to hand them over in)."""
    if folder is None:
        return quantize_here(checkpoint, None, vision, text)
    target = int8_folder(folder)
    if (found := _read_int8(target)) is None:
        in_child(_quantize_in_child, checkpoint, folder)
        found = _read_int8(target)
    if found is None:
        raise RuntimeError(f"the int8 model was quantized but not cached in {target}")
    return found


def quantize_here(checkpoint: Any, folder: Path | None, vision: ov.Model,
                  text: ov.Model) -> tuple[ov.Model, ov.Model, dict[str, Any]]:
    """Quantize in this process, and cache the result in `folder` when there is one."""
    target = int8_folder(folder) if folder else None
    if target and (target / "meta.json").is_file():
        core = ov.Core()
        return (core.read_model(target / "vision.xml"), core.read_model(target / "text.xml"),
                json.loads((target / "meta.json").read_text()))
    vision8, text8 = quantize.quantize_towers(vision, text, checkpoint.transform, checkpoint.tokenizer)
    cosine = _text_cosine(text8, checkpoint.model(), checkpoint.tokenizer)
    meta = {**quantize.CALIBRATION, "text_min_cosine": cosine, "text_int8": cosine >= quantize.TEXT_INT8_MIN_COSINE}
    if target:
        try:
            backend.save(target, vision8, text8, meta)
        except OSError as err:
            log.warning("could not cache the int8 model in %s (%s); it is quantized again next time", target,
                        err.strerror or err)
    return vision8, text8, meta


def _infer(model: ov.Model, hint: str) -> Any:
    """An image-tower call compiled with `hint`, or None where OpenVINO computes it in another precision
    (bf16 on a CPU without AVX512-BF16 or AMX compiles as f32: it would be timed as a copy of f32)."""
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"})
    if compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() != hint:
        return None

    def infer(pixels: np.ndarray) -> np.ndarray:
        return compiled.create_infer_request().infer({"pixel_values": pixels}, share_inputs=False)[0]
    return infer


def measure_precisions(checkpoint: Any, folder: Path, vision: ov.Model, text: ov.Model) -> dict[str, Any]:
    """Time f32, bf16 and int8 on held-out generated pictures and compare each with PyTorch fp32."""
    pixels = quantize.generated_images(checkpoint.transform, quantize.HELD_OUT_IMAGES, quantize.HELD_OUT_SEED)
    clip = checkpoint.model()
    with torch.no_grad():
        reference = backend.Tower(clip.vision_model, clip.visual_projection, "pixel_values")(
            torch.from_numpy(pixels)).numpy()
    candidates = {"fp32": _infer(vision, "f32")}
    if bf16 := _infer(vision, "bf16"):
        candidates["bf16"] = bf16
    try:
        candidates["int8"] = _infer(quantize_here(checkpoint, folder, vision, text)[0], "f32")
    except Exception as err:  # noqa: BLE001 - NNCF missing or failing leaves fp32 and bf16 to choose from
        log.warning("int8 is not available for %s (%s: %s)", checkpoint.spec, type(err).__name__, err)
    return precision_choice.measure(candidates, pixels, reference)


def auto_precision(checkpoint: Any, folder: Path | None, vision: ov.Model, text: ov.Model) -> str:
    """What `--precision auto` means for this model on this CPU; without a cache folder, where nothing
    measured could be kept, or where measuring fails, bf16 where the CPU has it natively and fp32 elsewhere."""
    if folder is None:
        return backend.image_precision("auto", ov.Core())
    try:
        return precision_choice.chosen_precision(folder, checkpoint.spec,
                                                 lambda: in_child(_measure_in_child, checkpoint, folder))
    except Exception as err:  # noqa: BLE001 - the measurement failing must not cost the backend
        fallback = backend.image_precision("auto", ov.Core())
        log.warning("could not measure the precisions of %s (%s: %s); using %s", checkpoint.spec,
                    type(err).__name__, err, fallback)
        return fallback


def in_child(job: Callable[[str, str, str, int], Any], checkpoint: Any, folder: Path) -> Any:
    """Run `job(spec, weights_sha256, folder, log level)` in a spawned process and return what it returns."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(job, checkpoint.spec, checkpoint.weights_sha256, str(folder),
                           logging.getLogger().getEffectiveLevel()).result()


def _child_towers(spec: str, weights_sha256: str, folder: str, level: int) -> tuple[Any, ov.Model, ov.Model]:
    from lib.cli import setup_logging
    from lib.model.loading import open_checkpoint

    if level <= logging.INFO:  # the caller shows its progress: so does its child
        setup_logging(verbose=level <= logging.DEBUG)
    checkpoint = open_checkpoint(spec)
    if checkpoint.weights_sha256 != weights_sha256:
        raise RuntimeError(f"the weights of {spec} changed while it was loading")
    core = ov.Core()
    return checkpoint, core.read_model(Path(folder) / "vision.xml"), core.read_model(Path(folder) / "text.xml")


def _quantize_in_child(spec: str, weights_sha256: str, folder: str, level: int) -> None:
    checkpoint, vision, text = _child_towers(spec, weights_sha256, folder, level)
    quantize_here(checkpoint, Path(folder), vision, text)


def _measure_in_child(spec: str, weights_sha256: str, folder: str, level: int) -> dict[str, Any]:
    checkpoint, vision, text = _child_towers(spec, weights_sha256, folder, level)
    return measure_precisions(checkpoint, Path(folder), vision, text)
