"""Choose what encodes: the device, the backend (OpenVINO on CPU, PyTorch on CUDA) and the precision.

OpenVINO is the CPU default because it is 2.2x PyTorch fp32 in f32 and 4.3x in bf16 on 2 cores (docs/
benchmarks.md). When it is not installed or cannot convert a model, the encoder is PyTorch's, with one log
line saying why: a build never fails for want of the faster backend.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from lib.cpu import cpu_flags
from lib.errors import ModelLoadError, first_line
from lib.model.encoder import Towers
from lib.model.torch_backend import TorchTowers

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "openvino")
PRECISIONS = ("auto", "fp32", "bf16", "int8")


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def cpu_has_bf16() -> bool:
    """True where the CPU does bf16 arithmetic natively (AVX512-BF16 or AMX), so bf16 pays off."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def pick_dtype(precision: str, device: torch.device) -> torch.dtype:
    """PyTorch's arithmetic: 'auto' (and 'int8', where OpenVINO failed and PyTorch took over) is bf16 where
    the device does it natively, else fp32."""
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if cpu_has_bf16() else torch.float32


def pick_backend(backend: str, device: torch.device) -> str:
    """'auto' is OpenVINO on CPU and PyTorch on CUDA; 'torch' and 'openvino' are taken as asked."""
    if backend not in BACKENDS:
        raise ModelLoadError(f"unknown backend {backend!r}; use one of: {', '.join(BACKENDS)}")
    if backend == "auto":
        return "openvino" if device.type == "cpu" else "torch"
    return backend


def build_towers(checkpoint: Any, backend: str, precision: str, device: torch.device, cache_dir: Path | None,
                 threads: int | None) -> Towers:
    """The towers of the chosen backend, or PyTorch's (logged once) when OpenVINO is missing or fails."""
    if precision not in PRECISIONS:
        raise ModelLoadError(f"unknown precision {precision!r}; use one of: {', '.join(PRECISIONS)}")

    def torch_towers() -> Towers:
        return TorchTowers(checkpoint.model(), device, pick_dtype(precision, device), threads)

    chosen = pick_backend(backend, device)
    if precision == "int8" and chosen == "torch":
        raise ModelLoadError("precision int8 needs the OpenVINO backend, on the CPU; with PyTorch use auto, fp32 "
                             "or bf16")
    if chosen == "openvino":
        try:
            return _openvino_towers(checkpoint, precision, cache_dir, threads, torch_towers)
        except ModelLoadError:
            raise  # the checkpoint itself is broken: PyTorch could not load it either
        except Exception as err:  # noqa: BLE001 - a missing package or any conversion failure
            log.warning("OpenVINO is not usable for %s (%s: %s); encoding with PyTorch", checkpoint.spec,
                        type(err).__name__, first_line(err))
    return torch_towers()


def _openvino_towers(checkpoint: Any, precision: str, cache_dir: Path | None, threads: int | None,
                     fallback: Any) -> Towers:
    import lib.model.openvino_backend as backend  # openvino is imported only when it is used
    import lib.model.openvino_int8 as int8

    vision, text, meta, folder = backend.load_or_convert(checkpoint, cache_dir)
    image = int8.auto_precision(checkpoint, folder, vision, text) if precision == "auto" else precision
    text_precision = "bf16" if image == "bf16" and meta.get("text_bf16") else "fp32"
    if image == "int8":
        vision, text8, int8_meta = int8.int8_towers(checkpoint, folder, vision, text)
        if int8_meta.get("text_int8"):
            text, text_precision = text8, "int8"
    return backend.OpenVinoTowers(vision, text, meta["logit_scale"], {"image": image, "text": text_precision},
                                  threads, fallback)
