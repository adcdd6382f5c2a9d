"""Embedding towers: load a dual encoder and turn images and texts into normalised vectors."""

from pixseek.embedding.encoder import DualEncoder, Encoder, ModelLoadError, load_encoder
from pixseek.embedding.presets import ENCODER_PRESETS

__all__ = ["ENCODER_PRESETS", "DualEncoder", "Encoder", "ModelLoadError", "load_encoder"]
