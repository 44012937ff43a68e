"""A loaded CLIP model: batches of images or texts in, L2-normalised float32 embeddings out.

The arithmetic is done by a backend's towers (lib/model/torch_backend.py, lib/model/openvino_backend.py);
everything else (tokenising, preprocessing, normalising, the model's identity) is the same whichever
backend runs, so vectors from either mix in one index.
"""
from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from PIL import Image

from lib.model.preprocess import ClipTransform
from lib.store.identity import ModelIdentity

MAX_LOGIT_SCALE = 100.0  # CLIP clamps its learned temperature here
WARM_UP_TEXT = "a photo"


class Towers(Protocol):
    """A backend: projected, not yet normalised features of preprocessed pixels and of token ids."""

    name: str  # "torch" or "openvino"
    precision: str  # what it computes in, e.g. "bf16" or "fp32"; for logs and benchmarks
    logit_scale: float  # the model's learned temperature, exp'd, before CLIP's clamp

    def prepare(self, threads: int | None = None) -> None: ...

    def image_features(self, pixels: np.ndarray) -> np.ndarray: ...

    def text_features(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray: ...


def _normalised(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype=np.float32)
    return features / np.maximum(np.linalg.norm(features, axis=-1, keepdims=True), 1e-12)


class ClipEncoder:
    """Encodes images and texts with one backend; safe to share between threads."""

    def __init__(self, towers: Towers, tokenizer: Any, transform: ClipTransform, identity: ModelIdentity,
                 context_length: int) -> None:
        self.towers = towers
        self.tokenizer = tokenizer
        self.transform = transform
        self.identity = identity
        self.context_length = context_length
        self._tokenizer_lock = threading.Lock()  # a fast tokenizer fails ("Already borrowed") if shared by threads

    @property
    def dim(self) -> int:
        return self.identity.dim

    @property
    def backend(self) -> str:
        return self.towers.name

    @property
    def precision(self) -> str:
        return self.towers.precision

    @property
    def logit_scale(self) -> float:
        """The model's learned softmax temperature (as a multiplier of cosine), clamped as CLIP does."""
        return min(self.towers.logit_scale, MAX_LOGIT_SCALE)

    def warm_up(self, threads: int | None = None) -> None:
        """Get ready in this process (compile, thread pools) and run one image and one query through, so
        that the first real request is as fast as the later ones. Call it after a fork, never before."""
        self.towers.prepare(threads)
        size = (1, 3, self.transform.crop_height, self.transform.crop_width)
        self.encode_pixels(np.zeros(size, dtype=np.float32))
        self.encode_texts([WARM_UP_TEXT])

    def _empty(self) -> np.ndarray:
        return np.zeros((0, self.dim), dtype=np.float32)

    def encode_pixels(self, pixels: Any) -> np.ndarray:
        """Embed a batch of preprocessed images (N, 3, H, W), as made by `transform` (an array or a CPU tensor)."""
        return _normalised(self.towers.image_features(np.ascontiguousarray(pixels, dtype=np.float32)))

    def encode_images(self, images: Sequence[Image.Image], batch_size: int = 64) -> np.ndarray:
        """Embed PIL images, `batch_size` at a time."""
        batches = [
            self.encode_pixels(np.stack([self.transform(image) for image in images[start:start + batch_size]]))
            for start in range(0, len(images), batch_size)
        ]
        return np.concatenate(batches) if batches else self._empty()

    def tokenize(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Token ids (int64) padded to the longest text, truncated to the model's context length."""
        with self._tokenizer_lock:
            tokens = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.context_length,
                                    return_tensors="np")
        return {name: np.ascontiguousarray(tokens[name], dtype=np.int64) for name in ("input_ids", "attention_mask")}

    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Embed texts, `batch_size` at a time; texts longer than the context are truncated."""
        batches = []
        for start in range(0, len(texts), batch_size):
            tokens = self.tokenize(texts[start:start + batch_size])
            batches.append(_normalised(self.towers.text_features(tokens["input_ids"], tokens["attention_mask"])))
        return np.concatenate(batches) if batches else self._empty()
