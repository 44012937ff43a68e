"""Turn a model spec (demo, an OpenAI short name, a Hugging Face id, a folder, random:) into a ClipEncoder."""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lib.errors import ModelLoadError, first_line
from lib.model.backends import build_towers, cpu_has_bf16, pick_device, pick_dtype  # noqa: F401 - re-exported
from lib.model.encoder import ClipEncoder
from lib.model.preprocess import ClipTransform
from lib.settings import REPO_ROOT, Settings
from lib.store.files import sha256_files
from lib.store.identity import ModelIdentity

log = logging.getLogger(__name__)

DEMO_MODEL_DIR = REPO_ROOT / "models" / "demo-clip"
OPENAI_ALIASES = {
    "ViT-B/32": "openai/clip-vit-base-patch32",
    "ViT-B/16": "openai/clip-vit-base-patch16",
    "ViT-L/14": "openai/clip-vit-large-patch14",
    "ViT-L/14@336px": "openai/clip-vit-large-patch14-336",
}
RANDOM_PREFIX = "random:"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def available_models() -> list[str]:
    """The names load_encoder knows without a path: the demo model and the OpenAI short names."""
    return ["demo", *OPENAI_ALIASES, *(RANDOM_PREFIX + name for name in ("ViT-B/32", "ViT-B/16"))]


def sha256_of_state(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def resolve_spec(spec: str) -> str:
    """Turn a short name into what from_pretrained takes: 'demo' and aliases become a folder or a hub id."""
    if spec == "demo":
        return str(DEMO_MODEL_DIR)
    if spec.startswith(RANDOM_PREFIX):
        return RANDOM_PREFIX + OPENAI_ALIASES.get(spec[len(RANDOM_PREFIX):], spec[len(RANDOM_PREFIX):])
    return OPENAI_ALIASES.get(spec, spec)


def _is_local(location: str) -> bool:
    return Path(location).expanduser().exists() or location.startswith((".", "/", "~"))


def _local_weights(folder: Path) -> list[Path]:
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return [folder / name]
    shards = sorted(folder.glob("model-*.safetensors")) or sorted(folder.glob("pytorch_model-*.bin"))
    if not shards:
        raise ModelLoadError(f"model folder {folder} has no weights ({' or '.join(WEIGHT_FILES)}); "
                             "point --model at a folder written by save_pretrained or lib.model.train")
    return shards


def _hub_weights(repo_id: str, offline: bool) -> list[Path]:
    from transformers.utils import cached_file

    for name in WEIGHT_FILES:
        path = cached_file(repo_id, name, local_files_only=offline, _raise_exceptions_for_missing_entries=False)
        if path:
            return [Path(path)]
    raise ModelLoadError(f"no weights file for {repo_id!r} in the Hugging Face cache")


@dataclass
class Checkpoint:
    """A spec resolved to everything an encoder needs; the weights load only when a backend asks for them
    (a cached OpenVINO model needs none of them)."""

    spec: str
    weights_sha256: str
    config: Any  # the CLIPConfig
    tokenizer: Any
    transform: ClipTransform
    load_model: Callable[[], Any]
    loaded: Any = field(default=None, repr=False)  # a model already built (random:), until someone takes it

    def model(self) -> Any:
        """The transformers CLIPModel, the caller's to keep: the checkpoint holds no reference to it, so that
        a model converted to OpenVINO does not stay in memory."""
        model, self.loaded = self.loaded or self.load_model(), None
        return model


@contextmanager
def _load_errors(location: str, local: bool, offline: bool) -> Iterator[None]:
    try:
        yield
    except ModelLoadError:
        raise
    except Exception as err:  # transformers raises OSError, ValueError, safetensors and torch errors alike
        raise ModelLoadError(_load_failure_message(location, local, offline, err)) from None


def _load_pretrained(spec: str, location: str, offline: bool) -> Checkpoint:
    from transformers import AutoTokenizer, CLIPConfig, CLIPModel

    local = _is_local(location)
    if local and not Path(location).expanduser().is_dir():
        raise ModelLoadError(f"model folder {location} does not exist; pass a folder written by save_pretrained, "
                             f"a Hugging Face id, or one of: {', '.join(available_models())}")
    source = str(Path(location).expanduser()) if local else location
    hub: dict[str, Any] = {} if local else {"local_files_only": offline}
    weights = _local_weights(Path(source)) if local else None
    with _load_errors(location, local, offline):
        config = CLIPConfig.from_pretrained(source, **hub)
        tokenizer = AutoTokenizer.from_pretrained(source, **hub)
        transform = ClipTransform.from_pretrained(source, **hub)
        weights = weights or _hub_weights(source, offline)

    def load_model() -> Any:
        with _load_errors(location, local, offline):
            # with output_loading_info it returns (model, info), which transformers' hints do not say
            loaded: Any = CLIPModel.from_pretrained(source, output_loading_info=True, **hub)
            model, info = loaded
        if info.get("missing_keys"):
            raise ModelLoadError(f"checkpoint {location} lacks {len(info['missing_keys'])} weights "
                                 f"(e.g. {info['missing_keys'][0]}); it is incomplete or not a CLIP model")
        return model

    return Checkpoint(spec, sha256_files(weights), config, tokenizer, transform, load_model)


def _load_failure_message(location: str, local: bool, offline: bool, err: BaseException) -> str:
    if local:
        return (f"model folder {location} could not be loaded ({first_line(err)}); its files are missing or "
                "corrupt: copy it again or retrain it with python -m lib.model.train")
    how = "offline mode is on (HF_HUB_OFFLINE)" if offline else "it could not be downloaded"
    return (f"model {location!r} is not in the Hugging Face cache and {how} ({first_line(err)}); "
            "download it once on a machine with internet, pass a local model folder, "
            f"or use one of: {', '.join(available_models())}")


def _build_random(spec: str, name: str, seed: int) -> Checkpoint:
    """A randomly initialised full-size architecture, for timing: the arithmetic of the real thing.

    It borrows the demo tokenizer, so the text config takes that tokenizer's special ids: CLIP pools the
    text at the first EOS id, and with OpenAI's (49407, which the demo tokenizer never emits) every text
    pooled at position 0 and got the same embedding. The ids are config only: the weights are unchanged.
    """
    from transformers import AutoTokenizer, CLIPConfig, CLIPModel

    configs = {"openai/clip-vit-base-patch32": {}, "openai/clip-vit-base-patch16": {"patch_size": 16}}
    if name not in configs:
        raise ModelLoadError(f"no random architecture named {name!r}; known: "
                             f"{', '.join(RANDOM_PREFIX + n for n in ('ViT-B/32', 'ViT-B/16'))}")
    tokenizer = AutoTokenizer.from_pretrained(str(DEMO_MODEL_DIR))
    special = {f"{kind}_token_id": getattr(tokenizer, f"{kind}_token_id") for kind in ("bos", "eos", "pad")}
    config = CLIPConfig(text_config=special, vision_config=configs[name])

    def load_model() -> Any:
        torch.manual_seed(seed)
        return CLIPModel(config)

    model = load_model()
    size = int(config.vision_config.image_size)  # type: ignore[union-attr, arg-type]  # a CLIPConfig's is an int
    return Checkpoint(spec, sha256_of_state(model), config, tokenizer, ClipTransform(size, size, size), load_model,
                      loaded=model)


def hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def open_checkpoint(spec: str, offline: bool | None = None) -> Checkpoint:
    """Resolve a spec to its tokenizer, preprocessing, config and weights' digest, without loading weights
    where it can. Raises ModelLoadError with a message that says what to do when it cannot."""
    location = resolve_spec(spec)
    offline = hub_offline() if offline is None else offline
    if location.startswith(RANDOM_PREFIX):
        return _build_random(spec, location[len(RANDOM_PREFIX):], seed=0)
    return _load_pretrained(spec, location, offline)


def load_encoder(spec: str = "demo", precision: str = "auto", device: str | None = None,
                 offline: bool | None = None, backend: str = "auto", cache_dir: Path | None = None,
                 threads: int | None = None) -> ClipEncoder:
    """Load a CLIP model from a spec: 'demo', an OpenAI short name, a Hugging Face id or a model folder.

    Hub models come from the local Hugging Face cache first and are downloaded only when not offline.
    `backend` 'auto' is OpenVINO on CPU (converted once, then read from `cache_dir`; converted in memory
    every time without one) and PyTorch on CUDA; `precision` 'auto' is bf16 where the hardware does it
    natively; `threads` inference threads (None: all cores). The model's identity is the same whichever
    backend encodes. Raises ModelLoadError with a message that says what to do when the spec cannot be loaded.
    """
    checkpoint = open_checkpoint(spec, offline)
    torch_device = torch.device(device) if device else pick_device()
    towers = build_towers(checkpoint, backend, precision, torch_device, cache_dir, threads)
    identity = ModelIdentity(spec=spec, weights_sha256=checkpoint.weights_sha256,
                             dim=int(checkpoint.config.projection_dim))
    log.info("loaded model %s (dim %d, weights %s): %s %s on %s", spec, identity.dim, identity.weights_sha256[:12],
             towers.name, towers.precision, torch_device if towers.name == "torch" else "cpu")
    return ClipEncoder(towers, checkpoint.tokenizer, checkpoint.transform, identity,
                       int(checkpoint.config.text_config.max_position_embeddings))


def encoder_for(settings: Settings, model: str | None = None) -> ClipEncoder:
    """The encoder the settings ask for: model (or `model`), backend, precision, inference threads, the
    workspace's cache."""
    return load_encoder(model or settings.model, precision=settings.precision, backend=settings.backend,
                        cache_dir=settings.cache_dir, threads=settings.inference_threads or None)
