"""The OpenVINO backend: both towers converted from the loaded CLIPModel, cached as IR, compiled per process.

Measured on 2 cores (docs/benchmarks.md): 2.2x PyTorch fp32 in f32 and 4.3x in bf16 on a CPU with AVX512-BF16,
at cosine >= 0.9999 to PyTorch. What a caller must know:
- The IR is cached under `<cache>/openvino/`, keyed by the weights' SHA-256, the model config, the IR's
  precision and the OpenVINO and transformers versions, so only the first load converts.
- Compiling happens in the process that encodes, on first use or in `prepare` (ClipEncoder.warm_up): a
  model compiled before a fork runs single-threaded, or hangs, in the child (gunicorn's preloading master).
- Every call makes its own infer request with share_inputs=False: a shared request is not thread-safe, and
  shared inputs let a later request overwrite the caller's array.
- The text tower computes in bf16 only if a probe at conversion time shows that it agrees with PyTorch fp32
  (cosine >= 0.9995 on PROBE_TEXTS; the demo model and random:ViT-B/32 do, at 0.99999 and 0.99994): an index
  built by one backend and queried by the other needs 0.999, and a prototype once saw 0.995 on a text tower.
  The probe compiles, so it runs in a spawned process (lib/model/spawned.py), on CPUs with native bf16 only.
- Only input_ids go into the text tower: its attention is causal and padding follows the EOS token that it
  pools, so the mask cannot change the result (tested against PyTorch with the mask).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import torch

import lib.model.quantize as quantize
import lib.model.spawned as spawned
from lib.errors import first_line
from lib.model.encoder import Towers

log = logging.getLogger(__name__)

CONVERSION = 1  # raise it when convert() changes, so that no older IR is read back
IR_PRECISION = "f32"  # weights as the IR stores them; what the CPU computes in is chosen when compiling
OV_TYPES = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}  # int8: what its unquantized ops compute in
EXAMPLE_TEXTS = ["a photo of a dog", "cat"]  # two lengths, so that the traced graph has padding in it
PROBE_TEXTS = ["red", "a photo of a dog", "two small blue squares on a striped background", "a yellow star",
               "three purple circles and a green triangle", "x", "an old photograph of a city street at night"]
TEXT_BF16_MIN_COSINE = 0.9995  # the text tower computes in bf16 only where it keeps this to fp32 PyTorch


class Tower(torch.nn.Module):
    """One tower of a CLIPModel with its projection: pixel_values (N, 3, S, S) float32 or input_ids (N, L)
    int64 in, projected features (N, D) out."""

    def __init__(self, tower: Any, projection: Any, input_name: str) -> None:
        super().__init__()
        self.tower, self.projection, self.input_name = tower, projection, input_name

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.projection(self.tower(**{self.input_name: inputs}).pooler_output)


def cpu_has_native_bf16(core: ov.Core) -> bool:
    """What OpenVINO's CPU plugin will use: it lists BF16 where the CPU has AVX512-BF16 or AMX."""
    return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def image_precision(requested: str, core: ov.Core) -> str:
    """'auto' is bf16 where the CPU does it natively, else fp32; fp32 and bf16 are taken as asked."""
    if requested == "auto":
        return "bf16" if cpu_has_native_bf16(core) else "fp32"
    return requested


def convert(clip: Any, tokenizer: Any) -> tuple[ov.Model, ov.Model]:
    """Trace both towers of a loaded CLIPModel into OpenVINO models with named, dynamic-batch inputs."""
    size = int(clip.config.vision_config.image_size)
    ids = tokenizer(EXAMPLE_TEXTS, padding=True, return_tensors="pt")["input_ids"]
    # The tracer warns of shape tests frozen into the graph: image size (fixed), more than one token and
    # no attention mask (always so here), context length (the tokenizer truncates): none varies in use.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        vision = ov.convert_model(Tower(clip.vision_model, clip.visual_projection, "pixel_values").eval(),
                                  example_input=torch.zeros(2, 3, size, size),
                                  input=[("inputs", ov.PartialShape([-1, 3, size, size]), ov.Type.f32)])
        text = ov.convert_model(Tower(clip.text_model, clip.text_projection, "input_ids").eval(), example_input=ids,
                                input=[("inputs", ov.PartialShape([-1, -1]), ov.Type.i64)])
    for model, names in ((vision, ("pixel_values", "image_embeds")), (text, ("input_ids", "text_embeds"))):
        model.inputs[0].get_tensor().set_names({names[0]})  # "inputs", the wrapper's argument, until named
        model.outputs[0].get_tensor().set_names({names[1]})
    return vision, text


def cache_key(weights_sha256: str, config_json: str) -> dict[str, str]:
    import transformers

    return {"weights_sha256": weights_sha256, "config_sha256": hashlib.sha256(config_json.encode()).hexdigest(),
            "ir_precision": IR_PRECISION, "conversion": str(CONVERSION), "openvino": ov.get_version(),
            "transformers": transformers.__version__}


def cache_folder(cache_dir: Path, key: dict[str, str]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir / "openvino" / f"{key['weights_sha256'][:16]}-{IR_PRECISION}-{digest}"


def save(folder: Path, vision: ov.Model, text: ov.Model, meta: dict[str, Any]) -> None:
    """Write the IR into a staging folder and rename it into place, so a half-written cache is never read."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=folder.name + ".", suffix=".tmp", dir=folder.parent))
    try:
        ov.save_model(vision, staging / "vision.xml", compress_to_fp16=False)
        ov.save_model(text, staging / "text.xml", compress_to_fp16=False)
        (staging / "meta.json").write_text(json.dumps(meta, indent=1))
        os.rename(staging, folder)
    except OSError:
        if not (folder / "meta.json").is_file():  # another process finished the same cache first: fine
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def text_cosine(text: ov.Model, clip: Any, tokenizer: Any, hint: str) -> float:
    """The lowest cosine between the text tower compiled with `hint` ("bf16", "f32") and PyTorch fp32 on
    PROBE_TEXTS."""
    ids = tokenizer(PROBE_TEXTS, padding=True, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expected = Tower(clip.text_model, clip.text_projection, "input_ids")(ids).numpy()
    compiled = ov.Core().compile_model(text, "CPU", {"INFERENCE_PRECISION_HINT": hint})
    got = compiled.create_infer_request().infer({"input_ids": ids.numpy()}, share_inputs=False)[0]
    return quantize.min_cosine(got, expected)


def reopen_checkpoint(spec: str, weights_sha256: str) -> Any:
    """The checkpoint `spec` opened again in a child process, checked to hold the weights its parent had."""
    from lib.model.loading import open_checkpoint

    checkpoint = open_checkpoint(spec)
    if checkpoint.weights_sha256 != weights_sha256:
        raise RuntimeError(f"the weights of {spec} changed while it was loading")
    return checkpoint


def _text_bf16_in_child(spec: str, weights_sha256: str, text_xml: str) -> float:
    checkpoint = reopen_checkpoint(spec, weights_sha256)
    return text_cosine(ov.Core().read_model(text_xml), checkpoint.model(), checkpoint.tokenizer, "bf16")


def text_bf16_agrees(checkpoint: Any, text: ov.Model) -> bool:
    """Whether the text tower in bf16 keeps TEXT_BF16_MIN_COSINE to PyTorch fp32, measured in a spawned child
    (lib/model/spawned.py): the caller may be a process that forks workers later."""
    with tempfile.TemporaryDirectory(prefix="clipsearch-probe-") as folder:
        ov.save_model(text, Path(folder) / "text.xml", compress_to_fp16=False)
        cosine = spawned.run_spawned(_text_bf16_in_child, checkpoint.spec, checkpoint.weights_sha256,
                                     str(Path(folder) / "text.xml"))
    log.info("the text tower of %s in bf16: cosine %.6f to PyTorch fp32 (%s needed)", checkpoint.spec, cosine,
             TEXT_BF16_MIN_COSINE)
    return bool(cosine >= TEXT_BF16_MIN_COSINE)


def read_cached(folder: Path) -> tuple[ov.Model, ov.Model, dict[str, Any]] | None:
    """The two towers and the meta that `save` wrote in `folder`; None while it holds no finished cache."""
    if not (folder / "meta.json").is_file():
        return None
    core = ov.Core()
    return (core.read_model(folder / "vision.xml"), core.read_model(folder / "text.xml"),
            json.loads((folder / "meta.json").read_text()))


def load_or_convert(checkpoint: Any, cache_dir: Path | None) -> tuple[ov.Model, ov.Model, dict[str, Any], Path | None]:
    """The two towers, what was learnt converting them (logit_scale, text_bf16) and their cache folder (None
    where nothing is cached): read from the cache, or converted (and cached when there is one)."""
    key = cache_key(checkpoint.weights_sha256, checkpoint.config.to_json_string())
    folder = cache_folder(cache_dir, key) if cache_dir else None
    core = ov.Core()
    if folder and (found := read_cached(folder)) is not None:
        log.info("OpenVINO model read from the cache %s", folder)
        return (*found, folder)
    started = time.perf_counter()
    clip = checkpoint.model()
    vision, text = convert(clip, checkpoint.tokenizer)
    meta = {"logit_scale": float(clip.logit_scale.detach().float().exp()),
            "text_bf16": cpu_has_native_bf16(core) and text_bf16_agrees(checkpoint, text)}
    try:
        if folder:
            save(folder, vision, text, {**key, **meta})
    except OSError as err:  # a read-only or full disk costs the next load a conversion, nothing more
        log.warning("could not cache the OpenVINO model in %s (%s); it is converted again next time", folder,
                    err.strerror or err)
        folder = None
    log.info("converted %s to OpenVINO in %.1f s%s", checkpoint.spec, time.perf_counter() - started,
             f" (cached in {folder})" if folder else "")
    return vision, text, meta, folder


class OpenVinoTowers:
    """Compiled lazily in the process that encodes; falls back to PyTorch if compiling fails there."""

    name = "openvino"

    def __init__(self, vision: ov.Model, text: ov.Model, logit_scale: float, precisions: dict[str, str],
                 threads: int | None, fallback: Callable[[], Towers]) -> None:
        self._models = {"image": vision, "text": text}
        self.logit_scale, self.threads, self._fallback = logit_scale, threads, fallback
        self.precisions = precisions  # per tower
        self.precision = precisions["image"]  # the image tower's, the one that sets a build's speed
        self._lock = threading.Lock()
        self._compiled: dict[str, Any] = {}
        self._pid: int | None = None  # the process the compiled models belong to
        self._torch: Towers | None = None  # set when OpenVINO failed and PyTorch took over

    def _config(self, tower: str) -> dict[str, Any]:
        config = {"INFERENCE_PRECISION_HINT": OV_TYPES[self.precisions[tower]], "PERFORMANCE_HINT": "LATENCY"}
        return {**config, "INFERENCE_NUM_THREADS": self.threads} if self.threads else config

    def prepare(self, threads: int | None = None) -> None:
        """Compile both towers in this process (again after a fork or for another thread count)."""
        with self._lock:
            if self._torch or (self._pid == os.getpid() and threads in (None, self.threads)):
                return
            self.threads = threads or self.threads
            try:
                core = ov.Core()
                self._compiled = {tower: core.compile_model(model, "CPU", self._config(tower))
                                  for tower, model in self._models.items()}
            except Exception as err:  # noqa: BLE001 - whatever OpenVINO raises, PyTorch can still encode
                log.warning("OpenVINO could not compile the model (%s); encoding with PyTorch", first_line(err))
                self._torch = self._fallback()
                self._torch.prepare(self.threads)
                self.name, self.precision = self._torch.name, self._torch.precision
                return
            self._pid = os.getpid()
            log.info("OpenVINO compiled: image tower %s, text tower %s, %s threads", self.precisions["image"],
                     self.precisions["text"], self.threads or "all")

    def compiled_property(self, name: str) -> dict[str, str]:
        """What OpenVINO made of a setting in this process, per tower (e.g. INFERENCE_PRECISION_HINT)."""
        self._ready()
        values = {tower: compiled.get_property(name) for tower, compiled in self._compiled.items()}
        return {tower: v.get_type_name() if isinstance(v, ov.Type) else str(v) for tower, v in values.items()}

    def _ready(self) -> Towers | None:
        """Compile if this process has not; the PyTorch towers if OpenVINO failed, else None."""
        if self._pid != os.getpid() and self._torch is None:
            self.prepare()
        return self._torch

    def _infer(self, tower: str, name: str, value: np.ndarray) -> np.ndarray:
        request = self._compiled[tower].create_infer_request()
        return request.infer({name: value}, share_inputs=False)[0]

    def image_features(self, pixels: np.ndarray) -> np.ndarray:
        fallback = self._ready()
        return fallback.image_features(pixels) if fallback else self._infer("image", "pixel_values", pixels)

    def text_features(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        fallback = self._ready()
        return (fallback.text_features(input_ids, attention_mask) if fallback
                else self._infer("text", "input_ids", input_ids))
