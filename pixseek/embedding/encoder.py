"""The dual-encoder towers behind indexing and search.

CLIP, AltCLIP and VisionTextDualEncoder checkpoints share one shape: ``get_image_features`` and
``get_text_features`` return a projected (not normalised) ``pooler_output`` in a common space.
One class drives all three; only the explicit model/processor classes differ per family.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

from pixseek.embedding.checkpoint import (
    ModelLoadError,
    image_min_side,
    load_config,
    load_for_inference,
    resolve_source,
)
from pixseek.embedding.runtime import precision_context
from pixseek.media.preprocess import preprocess_image
from pixseek.vocabulary import ENCODER_PRESETS

__all__ = ["DualEncoder", "Encoder", "ModelLoadError", "load_encoder"]


class Encoder(Protocol):
    model_id: str
    fingerprint: str
    dim: int
    device: torch.device
    precision: str
    image_min_side: int

    def preprocess_image(self, image: Image.Image) -> np.ndarray: ...
    def embed_pixels(self, pixel_values: np.ndarray) -> np.ndarray: ...
    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray: ...
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class _Family:
    model_class: str
    processor_class: str


# Explicit classes per model_type: AutoModel would silently build the wrong head for some folders.
_FAMILIES: dict[str, _Family] = {
    "clip": _Family("CLIPModel", "CLIPProcessor"),
    "altclip": _Family("AltCLIPModel", "AltCLIPProcessor"),
    "vision-text-dual-encoder": _Family("VisionTextDualEncoderModel", "VisionTextDualEncoderProcessor"),
}
# Text towers whose position ids start after the padding index (RoBERTa family) lose two positions.
_OFFSET_POSITION_TEXT_TYPES = {"altclip_text_model", "roberta", "xlm-roberta", "camembert"}


def _normalise(features: torch.Tensor) -> np.ndarray:
    features = features.float()
    features = features / features.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return features.cpu().numpy().astype(np.float32, copy=False)


def _fingerprint(model: torch.nn.Module) -> str:
    """Hash of the architecture and the projection weights: changes when a model is fine-tuned or
    swapped, stays put when the same checkpoint is loaded from another path or on another device."""
    digest = hashlib.sha256(type(model).__name__.encode())
    for name in ("visual_projection", "text_projection"):
        weight = getattr(model, name).weight.detach().float().cpu().contiguous()
        digest.update(name.encode())
        digest.update(str(tuple(weight.shape)).encode())
        digest.update(weight.numpy().tobytes())
    return digest.hexdigest()[:16]


class DualEncoder:
    """One loaded checkpoint: image and text towers that embed into the same L2-normalised space."""

    def __init__(self, model: Any, processor: Any, model_id: str, device: torch.device, precision: str):
        self.model = model.eval().to(device)
        self.processor = processor
        self.model_id = model_id
        self.device = device
        self.precision = precision
        self.dim = int(model.config.projection_dim)
        self.fingerprint = _fingerprint(self.model)
        self.image_min_side = image_min_side(processor.image_processor)
        text_config = model.config.text_config
        limit = int(getattr(text_config, "max_position_embeddings", 77))
        if text_config.model_type in _OFFSET_POSITION_TEXT_TYPES:
            limit -= 2
        self.max_text_tokens = min(limit, int(getattr(processor.tokenizer, "model_max_length", limit)))

    def preprocess_image(self, image: Image.Image) -> np.ndarray:
        """Resize/crop/normalise one image; thread-safe, so decode workers run it ahead of the model.
        Memory is bounded for any aspect ratio (:mod:`pixseek.media.preprocess`)."""
        return preprocess_image(self.processor.image_processor, image)

    def embed_pixels(self, pixel_values: np.ndarray) -> np.ndarray:
        tensor = torch.from_numpy(np.ascontiguousarray(pixel_values, dtype=np.float32)).to(self.device)
        with precision_context(self.precision, self.device):
            features = self.model.get_image_features(pixel_values=tensor).pooler_output
        return _normalise(features)

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.embed_pixels(np.stack([self.preprocess_image(image) for image in images]))

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # Pad to the longest text in the batch, not to 77: padding to max_length costs ~5x the FLOPs.
        tokens = self.processor.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_text_tokens, return_tensors="pt"
        ).to(self.device)
        with precision_context(self.precision, self.device):
            features = self.model.get_text_features(**tokens).pooler_output
        return _normalise(features)


def load_encoder(name: str, *, device: str = "auto", precision: str = "auto") -> DualEncoder:
    """Load a preset name, hub id or local directory with its explicit model and processor classes."""

    source = resolve_source(name, ENCODER_PRESETS)
    hint = "pass --model <local dir> holding a saved CLIP/AltCLIP/VisionTextDualEncoder checkpoint"
    config = load_config(name, source, hint)
    family = _FAMILIES.get(config.model_type)
    if family is None:
        raise ModelLoadError(
            f"model {name!r} is a {config.model_type!r}, not a dual encoder "
            f"(supported: {', '.join(sorted(_FAMILIES))}); {hint}"
        )
    loaded = load_for_inference(
        name, source, family.model_class, family.processor_class, hint, device, precision
    )
    return DualEncoder(loaded.model, loaded.processor, source, loaded.device, loaded.precision)
