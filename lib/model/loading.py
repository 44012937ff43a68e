"""Turn a model spec (demo, an OpenAI short name, a Hugging Face id, a folder, random:) into a ClipEncoder."""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import torch

from lib.errors import ModelLoadError
from lib.model.encoder import ClipEncoder
from lib.model.preprocess import ClipTransform
from lib.settings import REPO_ROOT
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


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def cpu_has_bf16() -> bool:
    """True where the CPU does bf16 arithmetic natively (AVX512-BF16 or AMX), so autocast pays off."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pick_dtype(precision: str, device: torch.device) -> torch.dtype:
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if cpu_has_bf16() else torch.float32


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


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


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


def _load_pretrained(location: str, offline: bool) -> tuple[Any, Any, ClipTransform, list[Path]]:
    from transformers import AutoTokenizer, CLIPModel

    local = _is_local(location)
    if local and not Path(location).expanduser().is_dir():
        raise ModelLoadError(f"model folder {location} does not exist; pass a folder written by save_pretrained, "
                             f"a Hugging Face id, or one of: {', '.join(available_models())}")
    source = str(Path(location).expanduser()) if local else location
    hub = {} if local else {"local_files_only": offline}
    weights = _local_weights(Path(source)) if local else None
    try:
        model, info = CLIPModel.from_pretrained(source, output_loading_info=True, **hub)
        tokenizer = AutoTokenizer.from_pretrained(source, **hub)
        transform = ClipTransform.from_pretrained(source, **hub)
        weights = weights or _hub_weights(source, offline=True)
    except ModelLoadError:
        raise
    except Exception as err:  # transformers raises OSError, ValueError, safetensors and torch errors alike
        raise ModelLoadError(_load_failure_message(location, local, offline, err)) from None
    if info.get("missing_keys"):
        raise ModelLoadError(f"checkpoint {location} lacks {len(info['missing_keys'])} weights "
                             f"(e.g. {info['missing_keys'][0]}); it is incomplete or not a CLIP model")
    return model, tokenizer, transform, weights


def _load_failure_message(location: str, local: bool, offline: bool, err: BaseException) -> str:
    if local:
        return (f"model folder {location} could not be loaded ({_first_line(err)}); its files are missing or "
                "corrupt: copy it again or retrain it with python -m lib.model.train")
    how = "offline mode is on (HF_HUB_OFFLINE)" if offline else "it could not be downloaded"
    return (f"model {location!r} is not in the Hugging Face cache and {how} ({_first_line(err)}); "
            "download it once on a machine with internet, pass a local model folder, "
            f"or use one of: {', '.join(available_models())}")


def _build_random(name: str, seed: int) -> tuple[Any, Any, ClipTransform, str]:
    """A randomly initialised full-size architecture, for timing: the arithmetic of the real thing."""
    from transformers import AutoTokenizer, CLIPConfig, CLIPModel

    configs = {"openai/clip-vit-base-patch32": {}, "openai/clip-vit-base-patch16": {"patch_size": 16}}
    if name not in configs:
        raise ModelLoadError(f"no random architecture named {name!r}; known: "
                             f"{', '.join(RANDOM_PREFIX + n for n in ('ViT-B/32', 'ViT-B/16'))}")
    torch.manual_seed(seed)
    model = CLIPModel(CLIPConfig(vision_config=configs[name]))
    tokenizer = AutoTokenizer.from_pretrained(str(DEMO_MODEL_DIR))
    image_size = model.config.vision_config.image_size
    return model, tokenizer, ClipTransform(image_size, image_size, image_size), sha256_of_state(model)


def hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def load_encoder(spec: str = "demo", precision: str = "auto", device: str | None = None,
                 offline: bool | None = None) -> ClipEncoder:
    """Load a CLIP model from a spec: 'demo', an OpenAI short name, a Hugging Face id or a model folder.

    Hub models come from the local Hugging Face cache first and are downloaded only when not offline.
    Raises ModelLoadError with a message that says what to do when the spec cannot be loaded.
    """
    location = resolve_spec(spec)
    offline = hub_offline() if offline is None else offline
    if location.startswith(RANDOM_PREFIX):
        model, tokenizer, transform, sha = _build_random(location[len(RANDOM_PREFIX):], seed=0)
    else:
        model, tokenizer, transform, weights = _load_pretrained(location, offline)
        sha = sha256_files(weights)
    torch_device = torch.device(device) if device else pick_device()
    identity = ModelIdentity(spec=spec, weights_sha256=sha, dim=int(model.config.projection_dim))
    log.info("loaded model %s (dim %d, weights %s) on %s", spec, identity.dim, sha[:12], torch_device)
    return ClipEncoder(model, tokenizer, transform, identity, torch_device, pick_dtype(precision, torch_device))
