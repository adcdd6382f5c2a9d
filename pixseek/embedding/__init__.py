"""Embedding towers: load a dual encoder and turn images and texts into normalised vectors.

Names are imported on first use, so that the presets (help texts, settings) cost no torch import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pixseek.embedding.presets import ENCODER_PRESETS

_LAZY = {
    "DualEncoder": "pixseek.embedding.encoder",
    "Encoder": "pixseek.embedding.encoder",
    "ModelLoadError": "pixseek.embedding.checkpoint",
    "load_encoder": "pixseek.embedding.encoder",
}

if TYPE_CHECKING:
    from pixseek.embedding.checkpoint import ModelLoadError
    from pixseek.embedding.encoder import DualEncoder, Encoder, load_encoder


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = ["ENCODER_PRESETS", "DualEncoder", "Encoder", "ModelLoadError", "load_encoder"]
