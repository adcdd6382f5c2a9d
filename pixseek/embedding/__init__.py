"""Embedding towers: load a dual encoder and turn images and texts into normalised vectors.

Names are imported on first use, so that the presets (help texts, settings) cost no torch import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pixseek.lazy import lazy_attributes
from pixseek.vocabulary import ENCODER_PRESETS

__getattr__ = lazy_attributes(
    __name__,
    {
        "DualEncoder": "pixseek.embedding.encoder",
        "Encoder": "pixseek.embedding.encoder",
        "ModelLoadError": "pixseek.embedding.checkpoint",
        "load_encoder": "pixseek.embedding.encoder",
        "CachedTowerEncoder": "pixseek.embedding.encoder",
    },
)

if TYPE_CHECKING:
    from pixseek.embedding.checkpoint import ModelLoadError
    from pixseek.embedding.encoder import DualEncoder, Encoder, load_encoder


__all__ = ["ENCODER_PRESETS", "DualEncoder", "Encoder", "ModelLoadError", "load_encoder"]
