"""Load a CLIP model from a spec and encode images and texts into L2-normalised float32 embeddings."""
from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from PIL import Image

from lib.errors import IndexMismatchError, ModelLoadError
from lib.hparams import REPO_ROOT
from lib.preprocess import ClipTransform

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


@dataclass(frozen=True)
class ModelIdentity:
    """What an index records about the model that wrote it; indexes only mix with the same weights."""

    spec: str
    weights_sha256: str
    dim: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelIdentity":
        return cls(spec=str(data["spec"]), weights_sha256=str(data["weights_sha256"]), dim=int(data["dim"]))

    def check_same(self, other: "ModelIdentity", what: str) -> None:
        """Raise IndexMismatchError unless `other` (the identity `what` was built with) has our weights."""
        if (self.weights_sha256, self.dim) != (other.weights_sha256, other.dim):
            raise IndexMismatchError(
                f"{what} was built with model {other.spec!r} (dim {other.dim}, weights {other.weights_sha256[:12]}) "
                f"but the model in use is {self.spec!r} (dim {self.dim}, weights {self.weights_sha256[:12]}); "
                "rebuild it with this model or start with the model it was built with"
            )


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


def sha256_of_files(paths: Iterable[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def sha256_of_state(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class ClipEncoder:
    """A loaded CLIP model: batches in, L2-normalised float32 numpy embeddings out."""

    def __init__(self, model: Any, tokenizer: Any, transform: ClipTransform, identity: ModelIdentity,
                 device: torch.device, dtype: torch.dtype) -> None:
        self.model = model.eval().to(device)
        self.tokenizer = tokenizer
        self.transform = transform
        self.identity = identity
        self.device = device
        self.dtype = dtype
        self.context_length = int(model.config.text_config.max_position_embeddings)
        self._tokenizer_lock = threading.Lock()  # a fast tokenizer fails ("Already borrowed") if shared by threads

    @property
    def dim(self) -> int:
        return self.identity.dim

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32)

    @staticmethod
    def _normalised(features: torch.Tensor) -> np.ndarray:
        features = features.float()
        features = features / features.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return features.cpu().numpy().astype(np.float32, copy=False)

    def encode_pixels(self, pixels: torch.Tensor | np.ndarray) -> np.ndarray:
        """Embed a batch of preprocessed images (N, 3, H, W), as made by `transform`."""
        pixels = torch.as_tensor(pixels, dtype=torch.float32).to(self.device)
        with torch.inference_mode(), self._autocast():
            pooled = self.model.vision_model(pixel_values=pixels).pooler_output
            return self._normalised(self.model.visual_projection(pooled))

    def encode_images(self, images: Sequence[Image.Image], batch_size: int = 64) -> np.ndarray:
        """Embed PIL images, `batch_size` at a time."""
        batches = [
            self.encode_pixels(np.stack([self.transform(image) for image in images[start:start + batch_size]]))
            for start in range(0, len(images), batch_size)
        ]
        return np.concatenate(batches) if batches else np.zeros((0, self.dim), dtype=np.float32)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Token ids padded to the longest text, truncated to the model's context length."""
        with self._tokenizer_lock:
            return self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.context_length,
                                  return_tensors="pt")

    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Embed texts, `batch_size` at a time; texts longer than the context are truncated."""
        batches = []
        for start in range(0, len(texts), batch_size):
            tokens = self.tokenize(texts[start:start + batch_size])
            with torch.inference_mode(), self._autocast():
                pooled = self.model.text_model(
                    input_ids=tokens["input_ids"].to(self.device),
                    attention_mask=tokens["attention_mask"].to(self.device),
                ).pooler_output
                batches.append(self._normalised(self.model.text_projection(pooled)))
        return np.concatenate(batches) if batches else np.zeros((0, self.dim), dtype=np.float32)


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
                             "point --model at a folder written by save_pretrained or lib.train")
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
                "corrupt: copy it again or retrain it with python -m lib.train")
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
        sha = sha256_of_files(weights)
    torch_device = torch.device(device) if device else pick_device()
    identity = ModelIdentity(spec=spec, weights_sha256=sha, dim=int(model.config.projection_dim))
    log.info("loaded model %s (dim %d, weights %s) on %s", spec, identity.dim, sha[:12], torch_device)
    return ClipEncoder(model, tokenizer, transform, identity, torch_device, pick_dtype(precision, torch_device))
