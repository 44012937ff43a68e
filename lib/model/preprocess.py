"""CLIP's image preprocessing in Pillow and NumPy, written out rather than calling transformers' processor.

Kept for speed, measured on a 640x480 JPEG on one core (transformers 5.23): 4.4 ms here against 5.6 ms
for CLIPImageProcessorPil and 6.4 ms for CLIPImageProcessor (which needs torchvision for its default
backend and falls back to the Pil one without it), with identical output (max abs difference 0; the
parity test in tests/model/test_loading.py holds it). It is also where decoding at a reduced scale
plugs in. transformers' processor is still what reads and writes preprocessor_config.json.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _three(values: list[float] | tuple[float, ...]) -> tuple[float, float, float]:
    """A processor's per-channel mean or std (RGB)."""
    red, green, blue = (float(v) for v in values)
    return red, green, blue


@dataclass(frozen=True)
class ClipTransform:
    """Resize the short side (bicubic), centre-crop, scale to [0, 1] and normalise; returns float32 CHW."""

    size: int
    crop_height: int
    crop_width: int
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, **hub_kwargs) -> ClipTransform:
        """Read the preprocessing of a model folder or Hugging Face id (its preprocessor_config.json)."""
        from transformers import CLIPImageProcessorPil

        processor = CLIPImageProcessorPil.from_pretrained(str(model_dir), **hub_kwargs)
        crop = processor.crop_size
        return cls(
            size=int(processor.size["shortest_edge"]),
            crop_height=int(crop["height"]),
            crop_width=int(crop["width"]),
            mean=_three(processor.image_mean),
            std=_three(processor.image_std),
        )

    def save_pretrained(self, model_dir: Path) -> None:
        """Write preprocessor_config.json in the format Hugging Face CLIP checkpoints use."""
        from transformers import CLIPImageProcessorPil

        CLIPImageProcessorPil(
            size={"shortest_edge": self.size},
            crop_size={"height": self.crop_height, "width": self.crop_width},
            image_mean=list(self.mean),
            image_std=list(self.std),
        ).save_pretrained(str(model_dir))

    def resized(self, image: Image.Image) -> Image.Image:
        """The RGB image with its short side at `size` and centre-cropped to the crop size."""
        image = image if image.mode == "RGB" else image.convert("RGB")
        width, height = image.size
        long_side = int(self.size * max(width, height) / min(width, height))
        new_size = (self.size, long_side) if width <= height else (long_side, self.size)
        if new_size != image.size:
            image = image.resize(new_size, Image.Resampling.BICUBIC)
        left = (new_size[0] - self.crop_width) // 2
        top = (new_size[1] - self.crop_height) // 2
        return image.crop((left, top, left + self.crop_width, top + self.crop_height))

    def crop(self, image: Image.Image) -> np.ndarray:
        """The resized, centre-cropped pixels as uint8 (H, W, 3): a quarter of the bytes of `__call__`'s
        float32, for handing images from the machine that decodes them to the one that encodes them."""
        return np.array(self.resized(image), dtype=np.uint8)

    def normalise(self, crops: np.ndarray) -> np.ndarray:
        """uint8 crops (..., H, W, 3) to the model's input: float32 (..., 3, H, W), scaled and normalised."""
        pixels: np.ndarray = crops.astype(np.float32) / 255.0
        pixels = (pixels - np.asarray(self.mean, dtype=np.float32)) / np.asarray(self.std, dtype=np.float32)
        return np.ascontiguousarray(np.moveaxis(pixels, -1, -3))

    def __call__(self, image: Image.Image) -> np.ndarray:
        return self.normalise(self.crop(image))
