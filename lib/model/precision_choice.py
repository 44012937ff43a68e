"""`--precision auto`: the fastest of f32, bf16 and int8 on this CPU that keeps fidelity, measured once.

No table of CPU names: the same chip is bf16's best case on one machine (AMX) and a loss on another (AVX2
emulates it), and int8 pays only where VNNI does its dot products. So the first auto load of a model on a CPU
times each precision's image tower on held-out generated pictures, measures its fidelity to PyTorch fp32 on
the same pictures (lib/model/quantize.py), and records both in the model's cache folder under a digest of
the CPU's model name and instruction-set flags. Every later load, in any process, reads that record.

fp32 is the reference and is always a candidate; bf16 (only where OpenVINO really computes in it) and int8
are candidates only when their fidelity passes and they beat fp32 by MIN_GAIN; a faster precision that failed
fidelity is named in the log with its recall.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lib.cpu import cpu_flags, cpuinfo
from lib.model.quantize import MIN_RECALL_AT_10, Fidelity, fidelity
from lib.store.files import write_atomic

log = logging.getLogger(__name__)

CHOICE = 1  # raise it when the measurement changes, so that older records are measured again
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_bf16", "amx_int8")
TIMING_S = 1.0  # at least this long per precision, and at least one pass over the held-out images
BATCH = 16
MIN_GAIN = 1.05  # another precision replaces fp32 only if it is this much faster: timings are noisy


def cpu_signature() -> dict[str, Any]:
    """What decides which precision is fastest: the CPU's model name and its vector-instruction flags."""
    names = [line.split(":", 1)[1].strip() for line in cpuinfo().splitlines() if line.startswith("model name")]
    flags = cpu_flags()
    return {"model": names[0] if names else "unknown", "flags": [f for f in FLAGS if f in flags], "choice": CHOICE}


def record_path(folder: Path, cpu: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(cpu, sort_keys=True).encode()).hexdigest()[:12]
    return folder / f"precision-{digest}.json"


def time_and_encode(infer: Callable[[np.ndarray], np.ndarray], pixels: np.ndarray) -> tuple[float, np.ndarray]:
    """Images per second of `infer` over `pixels` in batches (after one warm-up batch), and its outputs."""
    infer(pixels[:BATCH])
    started, passes, outputs = time.perf_counter(), 0, np.empty(0)
    while not passes or time.perf_counter() - started < TIMING_S:
        outputs = np.concatenate([infer(pixels[i:i + BATCH]) for i in range(0, len(pixels), BATCH)])
        passes += 1
    return passes * len(pixels) / (time.perf_counter() - started), outputs


def pick(speeds: dict[str, float], fidelities: dict[str, Fidelity]) -> tuple[str, list[str]]:
    """The fastest precision whose fidelity passes (fp32 always does: it is the reference) and that beats
    fp32 by MIN_GAIN, and why each faster one was passed over."""
    passed = [p for p in speeds if p == "fp32" or (fidelities[p].passes and speeds[p] >= MIN_GAIN * speeds["fp32"])]
    chosen = max(passed, key=lambda p: speeds[p])
    notes = [f"{p} is {speeds[p] / speeds[chosen]:.2f}x as fast but its recall@10 against PyTorch fp32 is "
             f"{fidelities[p].recall_at_10:.3f} (< {MIN_RECALL_AT_10})"
             for p in speeds if not fidelities[p].passes and speeds[p] > speeds[chosen]]
    return chosen, notes


def measure(candidates: dict[str, Callable[[np.ndarray], np.ndarray]], pixels: np.ndarray,
            reference: np.ndarray) -> dict[str, Any]:
    """Time every candidate precision on `pixels` and compare its embeddings with `reference` (fp32)."""
    speeds, fidelities = {}, {}
    for precision, infer in candidates.items():
        speeds[precision], outputs = time_and_encode(infer, pixels)
        fidelities[precision] = fidelity(outputs, reference)
    chosen, notes = pick(speeds, fidelities)
    return {"speed_images_per_s": {p: round(s, 2) for p, s in speeds.items()},
            "fidelity": {p: f.as_dict() for p, f in fidelities.items()}, "chosen": chosen, "passed_over": notes}


def read_record(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("chosen"), str) else None


def chosen_precision(folder: Path, spec: str, measure_here: Callable[[], dict[str, Any]]) -> str:
    """The recorded choice for this CPU, or one measured now (and recorded, if the cache is writable)."""
    cpu = cpu_signature()
    path = record_path(folder, cpu)
    record = read_record(path)
    if record is None:
        started = time.perf_counter()
        record = {**measure_here(), "cpu": cpu, "spec": spec}
        log.info("measured the precisions of %s on this CPU in %.1f s: %s images/s; fidelity %s", spec,
                 time.perf_counter() - started, record["speed_images_per_s"], record["fidelity"])
        try:
            write_atomic(json.dumps(record, indent=1).encode(), path)
        except OSError as err:
            log.warning("could not record the precision choice in %s (%s); it is measured again next time", path,
                        err.strerror or err)
    for note in record["passed_over"]:
        log.info("precision auto for %s: %s", spec, note)
    log.info("precision auto for %s on this CPU: %s", spec, record["chosen"])
    return str(record["chosen"])
