"""The PyTorch backend: the Hugging Face CLIPModel run as it is, in fp32 or under bf16 autocast."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch


class TorchTowers:
    """Projected (not yet normalised) image and text features from a CLIPModel on a torch device."""

    name = "torch"

    def __init__(self, model: Any, device: torch.device, dtype: torch.dtype, threads: int | None = None) -> None:
        self.model = model.eval().to(device)
        self.device, self.dtype, self.threads = device, dtype, threads
        self.precision = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")
        self.logit_scale = float(self.model.logit_scale.detach().float().exp())

    def prepare(self, threads: int | None = None) -> None:
        """Set the intra-op threads of this process (torch has one pool per process)."""
        threads = threads or self.threads
        if threads and self.device.type == "cpu":
            torch.set_num_threads(threads)

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32)

    def _features(self, tower: Any, projection: Any, **inputs: np.ndarray) -> np.ndarray:
        tensors = {name: torch.from_numpy(value).to(self.device) for name, value in inputs.items()}
        with torch.inference_mode(), self._autocast():
            return projection(tower(**tensors).pooler_output).float().cpu().numpy()

    def image_features(self, pixels: np.ndarray) -> np.ndarray:
        return self._features(self.model.vision_model, self.model.visual_projection, pixel_values=pixels)

    def text_features(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self._features(self.model.text_model, self.model.text_projection, input_ids=input_ids,
                              attention_mask=attention_mask)
