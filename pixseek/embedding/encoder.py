"""The dual-encoder towers behind indexing and search.

CLIP, AltCLIP and VisionTextDualEncoder checkpoints share one shape: ``get_image_features`` and
``get_text_features`` return a projected (not normalised) ``pooler_output`` in a common space.
One class drives all three; only the explicit model/processor classes differ per family.

Images run through one of two runtimes (:class:`pixseek.vocabulary.ImageRuntime`): the PyTorch
model, or on a CPU its image tower compiled with OpenVINO (pixseek.embedding.openvino_tower). With
a compiled tower cached for the checkpoint, :func:`load_encoder` returns a :class:`CachedTowerEncoder`,
which indexes without importing torch or transformers at all and loads the PyTorch model only
when a text is first embedded: a run's start-up drops from ~7 s to ~2 s (docs/benchmarks.md "Peers").
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from PIL import Image

from pixseek.embedding.checkpoint import (
    ModelLoadError,
    first_line,
    image_min_side,
    load_config,
    load_for_inference,
    resolve_source,
)
from pixseek.embedding.checkpoint_identity import CheckpointFolder, checkpoint_folder
from pixseek.embedding.image_transform import ImageTransform, image_transform, read_image_config
from pixseek.embedding.openvino_tower import (
    CompiledTower,
    TowerCache,
    TowerInfo,
    openvino_installed,
    supports,
)
from pixseek.embedding.runtime import device_type, resolve_precision
from pixseek.media.preprocess import preprocess_image
from pixseek.vocabulary import ENCODER_PRESETS, ImageRuntime, Precision

if TYPE_CHECKING:
    import torch

__all__ = ["CachedTowerEncoder", "DualEncoder", "Encoder", "ModelLoadError", "load_encoder"]

log = logging.getLogger(__name__)


class Encoder(Protocol):
    model_id: str
    fingerprint: str
    dim: int
    precision: str
    image_min_side: int

    @property
    def runtime(self) -> str:
        """Where and how the towers run, for people: e.g. ``cpu, bf16, OpenVINO images``."""
        ...

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


def _normalise(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype=np.float32)
    norms = np.maximum(np.linalg.norm(features, axis=-1, keepdims=True), 1e-12)
    return (features / norms).astype(np.float32, copy=False)


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
    """One loaded checkpoint: image and text towers that embed into the same L2-normalised space.

    ``transform`` (pixseek.embedding.image_transform) replaces the processor's image half when it
    reproduces it; ``image_tower`` (a compiled one) replaces the model's image half.
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        model_id: str,
        device: torch.device,
        precision: str,
        *,
        transform: ImageTransform | None = None,
        image_tower: CompiledTower | None = None,
    ):
        self.model = model.eval().to(device)
        self.processor = processor
        self.model_id = model_id
        self.device = device
        self.precision = precision
        self.transform = transform
        self.image_tower = image_tower
        self.dim = int(model.config.projection_dim)
        self.fingerprint = _fingerprint(self.model)
        self.image_min_side = transform.min_side if transform else image_min_side(processor.image_processor)
        text_config = model.config.text_config
        limit = int(getattr(text_config, "max_position_embeddings", 77))
        if text_config.model_type in _OFFSET_POSITION_TEXT_TYPES:
            limit -= 2
        self.max_text_tokens = min(limit, int(getattr(processor.tokenizer, "model_max_length", limit)))

    @property
    def runtime(self) -> str:
        images = "OpenVINO images" if self.image_tower is not None else "PyTorch"
        return f"{self.device}, {self.precision}, {images}"

    def preprocess_image(self, image: Image.Image) -> np.ndarray:
        """Resize/crop/normalise one image; thread-safe, so decode workers run it ahead of the model.
        Memory is bounded for any aspect ratio (:mod:`pixseek.media.preprocess`)."""
        if self.transform is not None:
            return self.transform(image)
        return preprocess_image(self.processor.image_processor, image)

    def embed_pixels(self, pixel_values: np.ndarray) -> np.ndarray:
        if self.image_tower is not None:
            return _normalise(self.image_tower(pixel_values))
        import torch

        from pixseek.embedding.runtime import precision_context

        tensor = torch.from_numpy(np.ascontiguousarray(pixel_values, dtype=np.float32)).to(self.device)
        with precision_context(self.precision, self.device):
            features = self.model.get_image_features(pixel_values=tensor).pooler_output
        return _normalise(features.float().cpu().numpy())

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.embed_pixels(np.stack([self.preprocess_image(image) for image in images]))

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        from pixseek.embedding.runtime import precision_context

        # Pad to the longest text in the batch, not to 77: padding to max_length costs ~5x the FLOPs.
        tokens = self.processor.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_text_tokens, return_tensors="pt"
        ).to(self.device)
        with precision_context(self.precision, self.device):
            features = self.model.get_text_features(**tokens).pooler_output
        return _normalise(features.float().cpu().numpy())


class CachedTowerEncoder:
    """A checkpoint whose compiled image tower is cached: images embed without torch, and the
    PyTorch model is loaded on the first text (a search, not an indexing run).

    The model loaded then must have the fingerprint the cache recorded, else the cache is stale
    in a way its key did not catch, and that is an error rather than texts and images from two
    different models in one space.
    """

    def __init__(
        self,
        info: TowerInfo,
        transform: ImageTransform,
        tower: CompiledTower,
        precision: str,
        load_model: Callable[[], DualEncoder],
    ):
        self.model_id = info.model_id
        self.fingerprint = info.fingerprint
        self.dim = info.dim
        self.precision = precision
        self.transform = transform
        self.image_tower = tower
        self.image_min_side = transform.min_side
        self._load_model = load_model
        self._model: DualEncoder | None = None
        self._lock = threading.Lock()

    @property
    def runtime(self) -> str:
        return f"cpu, {self.precision}, OpenVINO images"

    def preprocess_image(self, image: Image.Image) -> np.ndarray:
        return self.transform(image)

    def embed_pixels(self, pixel_values: np.ndarray) -> np.ndarray:
        return _normalise(self.image_tower(pixel_values))

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.embed_pixels(np.stack([self.transform(image) for image in images]))

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.text_model().embed_texts(texts)

    def text_model(self) -> DualEncoder:
        with self._lock:
            if self._model is None:
                model = self._load_model()
                if model.fingerprint != self.fingerprint:
                    raise ModelLoadError(
                        f"model {self.model_id!r} has fingerprint {model.fingerprint}, but its cached "
                        f"image tower was compiled from {self.fingerprint}; delete the image-towers "
                        "folder in the cache directory (PIXSEEK_CACHE_DIR) and run again"
                    )
                self._model = model
            return self._model


@dataclass(frozen=True)
class _Plan:
    """How :func:`load_encoder` will run the image tower."""

    openvino: bool
    precision: Precision


def _plan(runtime: str, device: str, precision: str) -> _Plan:
    """Decide the runtime before anything loads; an impossible explicit choice fails here."""
    kind = device_type(device)
    resolved = resolve_precision(precision, kind)
    if runtime == ImageRuntime.TORCH:
        return _Plan(False, resolved)
    usable = kind == "cpu" and supports(resolved) and openvino_installed()
    if runtime == ImageRuntime.OPENVINO and not usable:
        if kind != "cpu":
            why = f"it runs on the CPU, not {kind} (use --device cpu)"
        elif not supports(resolved):
            why = f"it runs fp32 or bf16, not {resolved}"
        else:
            why = "it is not installed (pip install openvino)"
        raise ModelLoadError(f"image runtime openvino cannot be used: {why}; or use --image-runtime torch")
    return _Plan(usable, resolved)


def load_encoder(
    name: str,
    *,
    device: str = "auto",
    precision: str = "auto",
    runtime: str = ImageRuntime.AUTO,
    cache_dir: Path | None = None,
) -> DualEncoder | CachedTowerEncoder:
    """Load a preset name, hub id or local directory with its explicit model and processor classes.

    With the OpenVINO runtime and a ``cache_dir``, a tower cached for the checkpoint is used
    without loading the model; otherwise the model loads and, the first time, its tower is
    exported to the cache.
    """
    source = resolve_source(name, ENCODER_PRESETS)
    plan = _plan(runtime, device, precision)
    cache = TowerCache(cache_dir) if plan.openvino and cache_dir is not None else None
    folder = checkpoint_folder(source) if cache is not None else None
    if cache is not None and folder is not None and folder.model_type in _FAMILIES:
        transform = image_transform(read_image_config(folder.folder) or {})
        found = cache.find(folder.identity())
        if transform is not None and found is not None and found[1].input_size == transform.output_size:
            tower_folder, info = found
            return CachedTowerEncoder(
                info,
                transform,
                CompiledTower(tower_folder, plan.precision),
                plan.precision,
                lambda: _load_model(name, source, device, plan.precision),
            )
    encoder = _load_model(name, source, device, plan.precision)
    if cache is not None:
        encoder.image_tower = _tower_for(encoder, cache, folder or checkpoint_folder(source), plan.precision)
    return encoder


def _load_model(name: str, source: str, device: str, precision: str) -> DualEncoder:
    """The PyTorch model and processor, with the lean image transform when it reproduces the processor."""
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
    transform = image_transform(loaded.processor.image_processor.to_dict())
    return DualEncoder(
        loaded.model, loaded.processor, source, loaded.device, loaded.precision, transform=transform
    )


def _tower_for(
    encoder: DualEncoder, cache: TowerCache, folder: CheckpointFolder | None, precision: str
) -> CompiledTower | None:
    """The compiled tower of a loaded model, exported to the cache the first time. A model that
    does not convert keeps its PyTorch tower (said once in the log): slower, never wrong."""
    if folder is None or encoder.transform is None:
        return None
    identity = folder.identity()
    found = cache.find(identity)
    if found is None:
        info = TowerInfo(encoder.model_id, encoder.fingerprint, encoder.dim, encoder.transform.output_size)
        try:
            cache.export(encoder.model, identity, info)
        except Exception as error:  # any converter failure means: stay on PyTorch
            log.warning(
                "OpenVINO could not convert %s (%s); images run in PyTorch",
                encoder.model_id,
                first_line(error),
            )
            return None
        found = cache.find(identity)
        if found is None:
            return None
    return CompiledTower(found[0], precision)
