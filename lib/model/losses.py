"""The trainer's two contrastive terms: image-text (CLIP's) and image-to-image (each picture against its edit)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

INSTANCE_SCALE = 20.0  # 1 / temperature of the image-to-image term (fixed: the learned scale is the text term's)


def contrastive_loss(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor,
                     caption_ids: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric InfoNCE; pairs that share a caption text are all counted as positives."""
    image_features = F.normalize(image_features, dim=-1)
    text_features = F.normalize(text_features, dim=-1)
    logits = logit_scale.exp().clamp(max=100.0) * image_features @ text_features.T
    same = (caption_ids[:, None] == caption_ids[None, :]).float()
    targets = same / same.sum(dim=1, keepdim=True)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def instance_loss(image_features: torch.Tensor, edit_features: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE between images and their light edits: every other image of the batch is a negative,
    those of the same class included (the hard negatives that teach "this picture" apart from "this class")."""
    image_features = F.normalize(image_features, dim=-1)
    edit_features = F.normalize(edit_features, dim=-1)
    logits = INSTANCE_SCALE * image_features @ edit_features.T
    targets = torch.arange(len(logits))
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
