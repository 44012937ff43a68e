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

from lib.errors import ModelLoadError, first_line
from lib.model.encoder import Towers
from lib.model.torch_backend import TorchTowers

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "openvino")
PRECISIONS = ("auto", "fp32", "bf16")


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def cpu_has_bf16() -> bool:
    """True where the CPU does bf16 arithmetic natively (AVX512-BF16 or AMX), so bf16 pays off."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pick_dtype(precision: str, device: torch.device) -> torch.dtype:
    """PyTorch's arithmetic: 'auto' is bf16 where the device does it natively, else fp32."""
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

    if pick_backend(backend, device) == "openvino":
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

    vision, text, meta = backend.load_or_convert(checkpoint, cache_dir)
    image = backend.image_precision(precision, backend.ov.Core())
    text_precision = "bf16" if image == "bf16" and meta.get("text_bf16") else "fp32"
    return backend.OpenVinoTowers(vision, text, meta["logit_scale"], {"image": image, "text": text_precision},
                                  threads, fallback)
