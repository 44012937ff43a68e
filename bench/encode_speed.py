#!/usr/bin/env python3
"""How fast each backend encodes, and how close build_image_index gets to it, in one run on this machine.

On generated photo-like JPEGs (640x480 by default), for each model:
  loads     seconds of a first load with the default backend (converts and caches) and of a cached load
  auto      what `--precision auto` measured on this CPU (lib/model/precision_choice.py): each candidate's
            images/s and fidelity to PyTorch fp32 (min cosine, recall@10 on held-out pictures), and its pick
  forward   images/s of the image tower alone on preprocessed tensors, best batch size, for PyTorch fp32,
            PyTorch bf16, OpenVINO f32, OpenVINO bf16 (bf16 only where the CPU has it natively) and OpenVINO
            int8, with the minimum cosine of each to PyTorch fp32
  text      ms of one text query, per backend, on every core and on one thread
  build     images/s of build_image_index end to end with the default backend (auto's pick), start-up
            excluded, and an unchanged re-run
  balance   (first model only) the build with other decode workers x inference threads
Targets (issue 26, ViT-B/32), by the CPU class detected: build >= 4.5x PyTorch fp32 forward with AMX, >= 3x
with AVX512-BF16 and no AMX, >= 2x on AVX2 only; build >= 85 % of the chosen precision's own forward, i.e. a
first build costs at most ~10 % more than its encoding alone; a text query on one thread <= 0.25x PyTorch
fp32's. Issue 3: re-run < 5 % of the build.

    flock -w 3600 /tmp/clipsearch-cpu.lock .venv/bin/python -m bench.encode_speed [--images 2000] [--models ...]

--smoke: the demo model only, 24 JPEGs of 160x120, batch 8, 0.2 s per timing window, one balance build.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from bench import SmokeParser, link_model_cache
from lib.cli import run
from lib.cpu import cpu_flags
from lib.data.photos import write_photos
from lib.ingest.image_index import build_image_index
from lib.model.backends import cpu_has_bf16
from lib.model.encoder import ClipEncoder
from lib.model.loading import load_encoder
from lib.settings import Settings, load_settings

QUERY = "a photo of two small blue squares on a striped background"  # 12 tokens with BOS and EOS
SMOKE = dict(images=24, width=160, height=120, models=["demo"], batch_sizes=[8], seconds=0.2, num_workers=1,
             balance=[(0, 1)])


class Variant(NamedTuple):
    backend: str
    precision: str


TARGETS = {"AMX": 4.5, "AVX512-BF16": 3.0, "AVX2": 2.0}  # build / PyTorch fp32 forward, by CPU class


def variants() -> list[Variant]:
    """Every backend and precision this CPU runs natively, and OpenVINO int8."""
    precisions = ["fp32", "bf16"] if cpu_has_bf16() else ["fp32"]
    return [*(Variant(backend, precision) for backend in ("torch", "openvino") for precision in precisions),
            Variant("openvino", "int8")]


def cpu_class() -> str:
    flags = cpu_flags()
    return "AMX" if "amx_bf16" in flags else "AVX512-BF16" if "avx512_bf16" in flags else "AVX2"


def cpu_features() -> str:
    import openvino as ov

    flags = cpu_flags()
    found = [flag for flag in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16") if flag in flags]
    capabilities = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return (f"CPU class {cpu_class()} (flags: {', '.join(found) or 'none of avx2/avx512'}; OpenVINO CPU capabilities: "
            f"{capabilities})")


def forward_rate(encoder: ClipEncoder, batch_sizes: list[int], seconds: float) -> tuple[float, int]:
    """Best images/s of encode_pixels on random preprocessed input, and the batch size that gave it."""
    best = (0.0, batch_sizes[0])
    for batch in batch_sizes:
        pixels = np.random.default_rng(batch).standard_normal((batch, 3, encoder.transform.crop_height,
                                                               encoder.transform.crop_width)).astype(np.float32)
        encoder.encode_pixels(pixels)  # warm-up: compiles kernels for this shape
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            encoder.encode_pixels(pixels)
            done += batch
        best = max(best, (done / (time.perf_counter() - started), batch))
    return best


def text_ms(encoder: ClipEncoder, threads: int | None = None, repeats: int = 30) -> float:
    """Median ms of one text query, computing on `threads` (None: every core)."""
    encoder.warm_up(threads or os.cpu_count())
    encoder.encode_texts([QUERY])
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        encoder.encode_texts([QUERY])
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def timed_load(spec: str, cache: Path) -> tuple[ClipEncoder, float]:
    started = time.perf_counter()
    encoder = load_encoder(spec, cache_dir=cache)
    return encoder, time.perf_counter() - started


def build_settings(workspace: Path, root: Path, batch: int, workers: int) -> Settings:
    return load_settings(environ={}, overrides=dict(workspace=str(workspace), dataset_name="bench",
                                                    dataset_path=str(root), batch_size=batch, num_workers=workers))


def build_rate(encoder: ClipEncoder, settings: Settings, count: int) -> tuple[float, float]:
    """Images/s of a first build (the engine's warm-up of the model left out), and seconds of an unchanged re-run."""
    first = build_image_index(settings, encoder, progress=False, rebuild=True)
    rerun = build_image_index(settings, encoder, progress=False)
    assert first.encoded == count and rerun.encoded == 0, "the benchmark dataset did not build cleanly"
    return first.encoded / (first.seconds - first.warm_up_s), rerun.seconds


def auto_record(cache: Path) -> dict[str, Any]:
    """What the first (auto) load measured and recorded for this CPU."""
    from lib.model.precision_choice import cpu_signature, read_record, record_path

    for folder in sorted((cache / "openvino").glob("*-f32-*")):
        if record := read_record(record_path(folder, cpu_signature())):
            return record
    return {}


def measure(spec: str, root: Path, count: int, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    # a smoke run reads the converted, quantized and measured models of the settings' cache: only the full run
    # times a first load (conversion, quantizing and auto's measurement), which is most of a smoke run otherwise
    cache = (link_model_cache(tmp) if args.smoke else tmp) / "cache"
    default, first_load = timed_load(spec, cache)
    default, cached_load = timed_load(spec, cache)
    default.warm_up()
    found: dict[str, Any] = {"spec": spec, "loads": (first_load, cached_load, default.backend, default.precision),
                             "forward": {}, "text": {}, "auto": auto_record(cache)}
    pixels = np.random.default_rng(0).standard_normal((8, 3, default.transform.crop_height,
                                                       default.transform.crop_width)).astype(np.float32)
    reference = None
    for variant in variants():
        encoder = load_encoder(spec, backend=variant.backend, precision=variant.precision, cache_dir=cache)
        encoder.warm_up()
        vectors = encoder.encode_pixels(pixels)
        reference = vectors if reference is None else reference  # the first variant is PyTorch fp32
        rate, batch = forward_rate(encoder, args.batch_sizes, args.seconds)
        found["forward"][variant] = (rate, batch, float((vectors * reference).sum(axis=1).min()))
        found["text"][variant] = (text_ms(encoder), text_ms(encoder, threads=1),
                                  getattr(encoder.towers, "precisions", {}).get("text", encoder.precision))
        encoder.warm_up(os.cpu_count())  # PyTorch's threads are the process's: all of them again
    own = found["forward"][Variant(default.backend, default.precision)]
    settings = build_settings(tmp / "workspace", root, own[1], args.num_workers)
    found["build"] = (default.backend, default.precision, args.num_workers, *build_rate(default, settings, count))
    found["balance"] = []
    for workers, threads in args.balance if spec == args.models[0] else []:
        default.warm_up(threads)  # compiles again with this many inference threads
        settings = build_settings(tmp / "workspace", root, own[1], workers)
        found["balance"].append((workers, threads, *build_rate(default, settings, count)))
    return found


def table(header: tuple[str, ...], rows: list[tuple]) -> None:
    print("\n| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) and v < 10 else
                                (f"{v:.1f}" if isinstance(v, float) else str(v)) for v in row) + " |")


def report(results: list[dict[str, Any]], count: int, args: argparse.Namespace) -> None:
    print(f"\n{count} photo-like JPEGs of {args.width}x{args.height}; {cpu_features()}")
    table(("model", "default backend", "first load s (converts)", "cached load s"),
          [(r["spec"], f"{r['loads'][2]} {r['loads'][3]}", r["loads"][0], r["loads"][1]) for r in results])
    table(("model", "backend", "precision", "batch", "forward img/s", "x PyTorch fp32", "min cos to PyTorch fp32"),
          [(r["spec"], v.backend, v.precision, batch, rate, rate / r["forward"][Variant("torch", "fp32")][0],
            f"{cos:.6f}") for r in results for v, (rate, batch, cos) in r["forward"].items()])
    table(("model", "precision", "auto's img/s", "min cos to PyTorch fp32", "recall@10 vs PyTorch fp32", "picked"),
          [(r["spec"], p, rate, f"{r['auto']['fidelity'][p]['min_cosine']:.6f}",
            f"{r['auto']['fidelity'][p]['recall_at_10']:.4f}", "yes" if p == r["auto"]["chosen"] else "")
           for r in results if r["auto"] for p, rate in r["auto"]["speed_images_per_s"].items()])
    table(("model", "backend", "precision", "text tower computes in", "text query ms", "x PyTorch fp32",
           "1 thread ms", "1 thread x PyTorch fp32 (target <= 0.25)"),
          [(r["spec"], v.backend, v.precision, text, ms, ms / r["text"][Variant("torch", "fp32")][0], one,
            one / r["text"][Variant("torch", "fp32")][1]) for r in results for v, (ms, one, text) in r["text"].items()])
    target = TARGETS[cpu_class()]
    rows = []
    for r in results:
        backend, precision, workers, rate, rerun = r["build"]
        own = r["forward"][Variant(backend, precision)][0]
        torch_fp32 = r["forward"][Variant("torch", "fp32")][0]
        rows.append((r["spec"], f"{backend} {precision}", workers, rate, f"{rate / own:.0%}", f"{own / rate:.2f}",
                     rate / torch_fp32, f"{target:g}x / 85%", rerun, f"{rerun * rate / count:.1%}"))
    table(("model", "backend", "decode workers", "build img/s", "build / own forward", "build time / encoding alone",
           "build / PyTorch fp32 forward", f"targets (ViT-B/32, {cpu_class()})", "re-run s", "re-run / first"), rows)
    for r in results:
        if r["balance"]:
            own = r["forward"][Variant(r["build"][0], r["build"][1])][0]
            table(("model", "decode workers", "inference threads", "build img/s", "build / own forward"),
                  [(r["spec"], w, t, rate, f"{rate / own:.0%}") for w, t, rate, _ in r["balance"]])


def make_parser() -> argparse.ArgumentParser:
    parser = SmokeParser(__doc__, SMOKE)
    parser.add_argument("--images", type=int, default=2000, help="JPEGs in the generated dataset (>= 2000)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--models", nargs="+", default=["random:ViT-B/32", "demo"])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--seconds", type=float, default=6.0, help="timing window per forward batch size")
    parser.add_argument("--num-workers", type=int, default=Settings().num_workers, help="decode workers of the build")
    parser.add_argument("--balance", type=lambda s: tuple(int(x) for x in s.split("x")), nargs="*",
                        default=[(0, 2), (1, 2), (2, 2), (3, 2), (2, 1)],
                        help="WORKERSxTHREADS builds for the first model (e.g. 1x2 2x2)")
    return parser


def bench(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-encode-") as tmp:
        root = Path(tmp) / "photos"
        started = time.perf_counter()
        count = len(write_photos(root, args.images, args.width, args.height))
        print(f"generated {count} JPEGs in {time.perf_counter() - started:.0f} s", flush=True)
        results = [measure(spec, root, count, Path(tmp) / spec.replace("/", "-").replace(":", "-"), args)
                   for spec in args.models]
    report(results, count, args)


def main(argv: list[str] | None = None) -> None:
    run("encode_speed", make_parser(), bench, argv)


if __name__ == "__main__":
    main()
