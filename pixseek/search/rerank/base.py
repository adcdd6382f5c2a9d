"""The re-ranker interface: how well does each candidate image match a text query?

An image-text-matching (ITM) head reads a text and an image together, so unlike the first stage it
cannot compare precomputed vectors. What it can reuse is the text-independent half of its work:
every re-ranker here splits into ``image_features`` (vision tower; cacheable per image) and
``score_features`` (cross-modal part and ITM head, run for one query against a batch of images).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from pixseek.media.preprocess import preprocess_image

# Pairs per forward. Larger batches gain nothing measurable on CPU and cost memory (one BridgeTower
# pair holds ~10 MB of activations per cross-modal layer); on CUDA 32 pairs keep the GPU busy.
BATCH_SIZE = 32
# Part of every fingerprint: bump when what a re-ranker caches changes, so old cache entries die.
FEATURE_FORMAT = 1


def weights_fingerprint(model: torch.nn.Module, feature_shape: tuple[int, ...]) -> str:
    """Identify a model by its architecture and a strided sample of every weight tensor.

    Cached features depend on the whole vision tower, and a fine-tune moves nearly every weight, so
    sampling up to 1024 values per tensor catches any real change while hashing a 1.2B-parameter
    model in milliseconds rather than the seconds a full hash takes. Loading the same checkpoint from
    another path or on another device gives the same fingerprint.
    """
    digest = hashlib.sha256(f"{type(model).__name__}|{feature_shape}|{FEATURE_FORMAT}".encode())
    for name, tensor in model.state_dict().items():
        flat = tensor.detach().reshape(-1)
        step = max(1, flat.numel() // 1024)
        digest.update(f"{name}|{tuple(tensor.shape)}".encode())
        digest.update(flat[::step].float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


class Reranker(ABC):
    """One loaded ITM checkpoint; ``score`` gives the match probability of each (text, image) pair.

    Subclasses set ``feature_shape`` (per image) and implement the two halves. Features leave
    ``image_features`` in ``feature_dtype``, the form the cache stores, and ``score_features`` takes
    them in that form, so a score never depends on whether the features came from the cache.
    """

    name: str  # the --rerank choice this implements: "bridgetower" or "blip2"
    feature_shape: tuple[int, ...]
    # What the cache stores. float16 halves the disk and moves fp32 probabilities by ~3e-5 on the
    # test checkpoints; a test sets float32 to show the split forward itself is exact.
    feature_dtype: np.dtype = np.dtype(np.float16)

    def __init__(self, model: Any, processor: Any, model_id: str, device: torch.device, precision: str):
        self.model = model.eval().to(device)
        self.processor = processor
        self.model_id = model_id
        self.device = device
        self.precision = precision
        self.fingerprint = weights_fingerprint(self.model, self.feature_shape)

    @property
    def features_id(self) -> str:
        """Names the cache directory, so that features from other weights or another precision never
        mix (bf16 scores differ from fp32 ones by up to ~5e-3 on the test checkpoints)."""
        return f"{self.fingerprint}-{self.precision}"

    @property
    def feature_bytes(self) -> int:
        """Size of one image's features as cached."""
        return int(np.prod(self.feature_shape)) * np.dtype(self.feature_dtype).itemsize

    def preprocess_image(self, image: Image.Image) -> np.ndarray:
        """Resize/crop/normalise one RGB image exactly as the checkpoint's processor does, with
        memory bounded for any aspect ratio (:mod:`pixseek.media.preprocess`)."""
        return preprocess_image(self.processor.image_processor, image)

    @abstractmethod
    def image_features(self, pixel_values: np.ndarray) -> np.ndarray:
        """(B, *feature_shape) text-independent features of preprocessed images, in ``feature_dtype``."""

    @abstractmethod
    def score_features(self, text: str, features: np.ndarray) -> np.ndarray:
        """(B,) float32 match probabilities of ``text`` against each image's features."""

    def score(self, text: str, images: Sequence[Image.Image]) -> np.ndarray:
        """Match probability of ``text`` with each image: BATCH_SIZE pairs per forward, no cache."""
        scores = [np.zeros(0, dtype=np.float32)]
        for start in range(0, len(images), BATCH_SIZE):
            chunk = images[start : start + BATCH_SIZE]
            pixels = np.stack([self.preprocess_image(image.convert("RGB")) for image in chunk])
            scores.append(self.score_features(text, self.image_features(pixels)))
        return np.concatenate(scores)

    def _stored(self, features: torch.Tensor) -> np.ndarray:
        """Features in the form the cache keeps them (``feature_dtype``)."""
        return features.float().cpu().numpy().astype(self.feature_dtype)

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        """Features or pixels as a float32 tensor on the model's device (autocast lowers it later)."""
        return torch.from_numpy(np.ascontiguousarray(array)).to(self.device, torch.float32)
