"""Outputs of a locked tower, computed once before training instead of at every step.

A locked tower (LiT) is in eval mode with frozen weights, so its output for an image or caption
never changes: running it every epoch only burns time. Computing every output once, in a fixed
order and fixed chunks, makes later steps cost only the projection, and keeps the values
bit-identical between an interrupted run and its resumption.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from pixseek.embedding.runtime import autocast
from pixseek.media.errors import DecodeError
from pixseek.training.data import ImageLoader, TrainingSet

CHUNK = 64


@torch.no_grad()
def text_features(
    model: Any, tokenizer: Any, captions: Sequence[str], max_tokens: int, precision: str
) -> torch.Tensor:
    """The locked text tower's pooled output per caption, in caption order (fp32, on the model's device)."""
    device = model.logit_scale.device
    outputs = []
    for start in range(0, len(captions), CHUNK):
        tokens = tokenizer(
            list(captions[start : start + CHUNK]),
            padding=True,
            truncation=True,
            max_length=max_tokens,
            return_tensors="pt",
        ).to(device)
        with autocast(precision, device):
            outputs.append(model.text_model(**tokens).pooler_output.float())
    return torch.cat(outputs)


@torch.no_grad()
def image_features(
    model: Any, training: TrainingSet, loader: ImageLoader, precision: str
) -> tuple[dict[int, torch.Tensor], list[tuple[str, str]]]:
    """The locked image tower's pooled output per usable image (by index into ``data.images``), and
    the images that no longer decode."""
    device = model.logit_scale.device
    features: dict[int, torch.Tensor] = {}
    skipped = []
    ids = [int(i) for i in training.usable]
    for start in range(0, len(ids), CHUNK):
        batch, pixels = [], []
        for image_id in ids[start : start + CHUNK]:
            path = training.data.images[image_id]
            try:
                pixels.append(loader.pixels(path))
            except DecodeError as error:
                skipped.append((str(path), error.reason))
                continue
            batch.append(image_id)
        if not batch:
            continue
        with autocast(precision, device):
            pooled = model.vision_model(
                pixel_values=torch.from_numpy(np.stack(pixels)).to(device)
            ).pooler_output
        features.update(zip(batch, pooled.float(), strict=True))
    return features, skipped
