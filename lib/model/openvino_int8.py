"""OpenVINO's int8 towers and the auto choice of precision, on top of the cached f32 IR.

The int8 IR lives inside the f32 IR's cache folder (so it is keyed by the same weights, config and versions)
under a name that digests the calibration and NNCF's version. Quantizing needs the PyTorch model once, to
check that the int8 text tower agrees with fp32 (TEXT_INT8_MIN_COSINE); otherwise the text tower keeps
computing in float and only the image tower, which sets a build's speed, is int8.

Quantizing and measuring compile models, and a process that has compiled an OpenVINO model hangs its forked
children when they compile (lib/model/spawned.py). So both run in a spawned child process that writes the
cache, and the caller only reads it back. Only where there is no
cache folder to hand results over does `--precision int8` quantize in the caller's own process.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import torch

import lib.model.openvino_backend as backend
import lib.model.precision_choice as precision_choice
import lib.model.quantize as quantize
import lib.model.spawned as spawned

log = logging.getLogger(__name__)


def int8_folder(folder: Path) -> Path:
    import nncf

    key = json.dumps({**quantize.CALIBRATION, "nncf": nncf.__version__}, sort_keys=True)
    return folder / f"int8-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def int8_towers(checkpoint: Any, folder: Path | None, vision: ov.Model,
                text: ov.Model) -> tuple[ov.Model, ov.Model, dict[str, Any]]:
    """The int8 towers and whether the text one agrees with fp32: read from the cache, or quantized (in a
    child process where there is a cache to hand them over in)."""
    if folder is None:
        return quantize_here(checkpoint, None, vision, text)
    target = int8_folder(folder)
    if (found := backend.read_cached(target)) is None:
        in_child(_quantize_in_child, checkpoint, folder)
        found = backend.read_cached(target)
    if found is None:
        raise RuntimeError(f"the int8 model was quantized but not cached in {target}")
    return found


def quantize_here(checkpoint: Any, folder: Path | None, vision: ov.Model,
                  text: ov.Model) -> tuple[ov.Model, ov.Model, dict[str, Any]]:
    """Quantize in this process, and cache the result in `folder` when there is one."""
    target = int8_folder(folder) if folder else None
    if target and (found := backend.read_cached(target)) is not None:
        return found
    vision8, text8 = quantize.quantize_towers(vision, text, checkpoint.transform, checkpoint.tokenizer)
    cosine = round(backend.text_cosine(text8, checkpoint.model(), checkpoint.tokenizer, "f32"), 6)
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


def in_child(job: Callable[[str, str, str], Any], checkpoint: Any, folder: Path) -> Any:
    """Run `job(spec, weights_sha256, folder)` in a spawned process (lib/model/spawned.py says why)."""
    return spawned.run_spawned(job, checkpoint.spec, checkpoint.weights_sha256, str(folder))


def _child_towers(spec: str, weights_sha256: str, folder: str) -> tuple[Any, ov.Model, ov.Model]:
    checkpoint = backend.reopen_checkpoint(spec, weights_sha256)
    found = backend.read_cached(Path(folder))
    if found is None:
        raise RuntimeError(f"the OpenVINO model of {spec} is no longer cached in {folder}")
    return checkpoint, found[0], found[1]


def _quantize_in_child(spec: str, weights_sha256: str, folder: str) -> None:
    checkpoint, vision, text = _child_towers(spec, weights_sha256, folder)
    quantize_here(checkpoint, Path(folder), vision, text)


def _measure_in_child(spec: str, weights_sha256: str, folder: str) -> dict[str, Any]:
    checkpoint, vision, text = _child_towers(spec, weights_sha256, folder)
    return measure_precisions(checkpoint, Path(folder), vision, text)
