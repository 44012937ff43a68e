"""The project's small CLIP: its architecture as data, and a CLIP-format BPE tokenizer trained on captions."""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lib.model.preprocess import ClipTransform

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


@dataclass(frozen=True)
class Architecture:
    """The size of a small CLIP; the defaults are the shipped demo model's."""

    width: int = 128
    layers: int = 4
    heads: int = 4
    embed_dim: int = 128
    image_size: int = 96
    patch_size: int = 12
    context_length: int = 32


def train_tokenizer(texts: Iterable[str], vocab_size: int, context_length: int) -> Any:
    """A byte-level BPE tokenizer in CLIP's format (same normaliser, pre-tokeniser and `</w>` word ends)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    template = CLIPTokenizer().backend_tokenizer
    bpe = Tokenizer(models.BPE(continuing_subword_prefix="", end_of_word_suffix="</w>"))
    bpe.normalizer = template.normalizer
    bpe.pre_tokenizer = template.pre_tokenizer
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=alphabet, end_of_word_suffix="</w>",
                                  show_progress=False)
    bpe.train_from_iterator(texts, trainer)
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
              for m in json.loads(bpe.to_str())["model"]["merges"]]
    tokens = alphabet + [c + "</w>" for c in alphabet] + ["".join(m) for m in merges] + [BOS, EOS]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=context_length)  # type: ignore[arg-type]
    # (transformers' hint says list[str]; the tokenizers backend takes the (left, right) pairs given here)


def write_vocab_files(tokenizer: Any, folder: Path) -> None:
    """Also write vocab.json and merges.txt, the files of the original CLIP tokenizer format."""
    model = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    (folder / "vocab.json").write_text(json.dumps(model["vocab"], ensure_ascii=False))
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(m + "\n" for m in merges))


def small_config(arch: Architecture, tokenizer: Any) -> Any:
    from transformers import CLIPConfig

    shared = dict(hidden_size=arch.width, intermediate_size=arch.width * 4, num_hidden_layers=arch.layers,
                  num_attention_heads=arch.heads)
    text = dict(shared, vocab_size=len(tokenizer), max_position_embeddings=arch.context_length,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id)
    vision = dict(shared, image_size=arch.image_size, patch_size=arch.patch_size)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=arch.embed_dim)


def new_model(texts: Iterable[str], arch: Architecture, vocab_size: int) -> tuple[Any, Any, ClipTransform]:
    """A randomly initialised small CLIP with a tokenizer trained on `texts` (the training captions)."""
    from transformers import CLIPModel

    tokenizer = train_tokenizer(texts, vocab_size, arch.context_length)
    model = CLIPModel(small_config(arch, tokenizer))
    return model, tokenizer, ClipTransform(arch.image_size, arch.image_size, arch.image_size)


def resize_input(model: Any, image_size: int, patch_size: int) -> ClipTransform:
    """Give a trained CLIP a larger (or smaller) input side at the same patch grid, for fine-tuning at it.

    The patch kernels are resampled to the new patch size (bicubic, scaled by the area ratio so that a
    patch of an image enlarged by the same factor gets the same embedding), and the grid stays the same,
    so the position embeddings and every transformer weight carry over as they are. Returns the matching
    preprocessing.
    """
    import torch
    import torch.nn.functional as F

    embeddings = model.vision_model.embeddings
    old_patch = int(embeddings.patch_size)
    if image_size // patch_size != embeddings.image_size // old_patch or image_size % patch_size:
        raise ValueError(f"input {image_size} with patches of {patch_size} is not the model's "
                         f"{embeddings.image_size // old_patch}x{embeddings.image_size // old_patch} grid")
    kernels = embeddings.patch_embedding.weight.detach()
    resampled = F.interpolate(kernels, size=(patch_size, patch_size), mode="bicubic", align_corners=False)
    conv = torch.nn.Conv2d(kernels.shape[1], kernels.shape[0], patch_size, stride=patch_size, bias=False)
    with torch.no_grad():
        conv.weight.copy_(resampled * (old_patch / patch_size) ** 2)
    embeddings.patch_embedding = conv
    embeddings.image_size, embeddings.patch_size = image_size, patch_size
    model.config.vision_config.image_size, model.config.vision_config.patch_size = image_size, patch_size
    model.vision_model.config.image_size, model.vision_model.config.patch_size = image_size, patch_size
    return ClipTransform(image_size, image_size, image_size)
