"""A loaded CLIP model: batches of images or texts in, L2-normalised float32 embeddings out."""
from __future__ import annotations

import threading
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from lib.model.preprocess import ClipTransform
from lib.store.identity import ModelIdentity

MAX_LOGIT_SCALE = 100.0  # CLIP clamps its learned temperature here


class ClipEncoder:
    """Encodes with a Hugging Face CLIPModel; safe to share between threads."""

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

    @property
    def logit_scale(self) -> float:
        """The model's learned softmax temperature (as a multiplier of cosine), clamped as CLIP does."""
        return float(self.model.logit_scale.detach().exp().clamp(max=MAX_LOGIT_SCALE))

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32)

    @staticmethod
    def _normalised(features: torch.Tensor) -> np.ndarray:
        features = features.float()
        features = features / features.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return features.cpu().numpy().astype(np.float32, copy=False)

    def _empty(self) -> np.ndarray:
        return np.zeros((0, self.dim), dtype=np.float32)

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
        return np.concatenate(batches) if batches else self._empty()

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
        return np.concatenate(batches) if batches else self._empty()
