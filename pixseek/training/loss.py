"""CLIP's symmetric InfoNCE loss over a batch of matching image-text pairs."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# CLIP clips its learnable temperature so that logits never exceed 100x the cosine: beyond that
# training turns unstable (Radford et al. 2021, section 2.5).
MAX_LOGIT_SCALE = math.log(100.0)


def clip_loss(
    image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """Mean of the image->text and text->image cross-entropies; row i of each input is a pair.

    Features are normalised here, in fp32, whatever precision the towers ran in: the softmax over a
    whole batch of logits up to 100 is where fp16/bf16 rounding would hurt.
    """
    images = F.normalize(image_features.float(), dim=-1)
    texts = F.normalize(text_features.float(), dim=-1)
    logits = logit_scale.float().exp() * texts @ images.T  # [texts, images]
    labels = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def clamp_logit_scale(logit_scale: torch.nn.Parameter) -> None:
    """After each optimizer step, as CLIP does (the parameter itself, not just its use in the loss)."""
    with torch.no_grad():
        logit_scale.clamp_(0, MAX_LOGIT_SCALE)
