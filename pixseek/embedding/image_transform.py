"""CLIP- and ViT-style image preprocessing read from a checkpoint's processor config, without
transformers.

Why not the checkpoint's own processor: loading it imports transformers' processing stack, which
imports torch (4.2 s before the first image, docs/benchmarks.md "Peers"), and its per-image call
validates, converts and rescales in float64 on every image. This module reproduces exactly the
steps of transformers' PIL backend for the two processor types the supported dual encoders ship
(``CLIPImageProcessor``: shorter side to ``shortest_edge``, centre crop; ``ViTImageProcessor``: a
fixed height x width), with the same Pillow resize call, so its pixels equal the processor's
(tests/test_image_transform.py compares them). A config with anything else (another processor
type, padding, an unknown option turned on) is not guessed at: :func:`image_transform` returns
None and the caller uses the transformers processor.

Rescaling and normalising a uint8 channel can only produce 256 values, so they are one table
look-up per channel, computed with transformers' own float64-then-float32 arithmetic.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pixseek.media.preprocess import MAX_ASPECT_RATIO, crop_to_aspect_ratio

# transformers.image_utils' OPENAI_CLIP_* and IMAGENET_STANDARD_* constants (the class defaults).
_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_STANDARD_MEAN = (0.5, 0.5, 0.5)
_STANDARD_STD = (0.5, 0.5, 0.5)

# Class defaults of each supported processor, for keys a saved config leaves out.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "clip": {
        "do_resize": True,
        "size": {"shortest_edge": 224},
        "resample": Image.Resampling.BICUBIC,
        "do_center_crop": True,
        "crop_size": {"height": 224, "width": 224},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": _CLIP_MEAN,
        "image_std": _CLIP_STD,
    },
    "vit": {
        "do_resize": True,
        "size": {"height": 224, "width": 224},
        "resample": Image.Resampling.BILINEAR,
        "do_center_crop": False,
        "crop_size": None,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": _STANDARD_MEAN,
        "image_std": _STANDARD_STD,
    },
}
_KINDS = {
    "CLIPImageProcessor": "clip",
    "CLIPImageProcessorFast": "clip",
    "CLIPImageProcessorPil": "clip",
    "CLIPFeatureExtractor": "clip",
    "ViTImageProcessor": "vit",
    "ViTImageProcessorFast": "vit",
    "ViTImageProcessorPil": "vit",
    "ViTFeatureExtractor": "vit",
}
# Keys that change nothing here (RGB conversion happens in the decoder; the rest is bookkeeping).
_IGNORED = {
    "image_processor_type",
    "feature_extractor_type",
    "processor_class",
    "do_convert_rgb",
    "default_to_square",
    "input_data_format",
    "data_format",
    "device",
    "return_tensors",
}


@dataclass(frozen=True)
class ImageTransform:
    """Decoded RGB image -> the model's float32 (C, H, W) pixels."""

    shortest_edge: int | None  # resize the shorter side to this (aspect kept)...
    resize_to: tuple[int, int] | None  # ...or to this (height, width)
    resample: int
    crop_to: tuple[int, int] | None  # centre crop (height, width)
    table: np.ndarray  # (3, 256) float32: each channel's rescaled, normalised value of 0..255

    @property
    def output_size(self) -> tuple[int, int]:
        """(height, width) of the pixels it makes: the model's input size."""
        if self.crop_to is not None:
            return self.crop_to
        if self.resize_to is not None:
            return self.resize_to
        raise ValueError("a transform without a fixed output size")

    @property
    def min_side(self) -> int:
        """The largest side length it asks for: a JPEG may be drafted down to this shorter side."""
        sides = [*(self.resize_to or ()), *(self.crop_to or ())]
        if self.shortest_edge is not None:
            sides.append(self.shortest_edge)
        return max(sides)

    @property
    def keeps_only_centre(self) -> bool:
        """As :func:`pixseek.media.preprocess.keeps_only_centre`: shorter side resized, then a crop no
        larger than it, so cutting a hostile elongated image to 10:1 first changes nothing kept."""
        return (
            self.shortest_edge is not None
            and self.crop_to is not None
            and max(self.crop_to) <= self.shortest_edge
        )

    def __call__(self, image: Image.Image) -> np.ndarray:
        if image.mode != "RGB":
            image = image.convert("RGB")
        if self.keeps_only_centre:
            image = crop_to_aspect_ratio(image, MAX_ASPECT_RATIO)
        image = image.resize(self._resized_size(image.size), resample=self.resample, reducing_gap=None)
        pixels = np.asarray(image)
        if self.crop_to is not None:
            pixels = _centre_crop(pixels, self.crop_to)
        out = np.empty((3, *pixels.shape[:2]), dtype=np.float32)
        for channel in range(3):
            np.take(self.table[channel], pixels[..., channel], out=out[channel])
        return out

    def _resized_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """(width, height) for Pillow, computed as transformers' get_resize_output_image_size."""
        if self.resize_to is not None:
            height, width = self.resize_to
            return width, height
        if self.shortest_edge is None:
            return size
        width, height = size
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = self.shortest_edge, int(self.shortest_edge * long / short)
        return (new_short, new_long) if width <= height else (new_long, new_short)


def _centre_crop(pixels: np.ndarray, crop: tuple[int, int]) -> np.ndarray:
    """transformers' center_crop of an (H, W, C) array, zero padding included."""
    height, width = pixels.shape[:2]
    crop_height, crop_width = crop
    if crop_height > height or crop_width > width:
        padded = np.zeros((max(height, crop_height), max(width, crop_width), 3), dtype=pixels.dtype)
        top_pad, left_pad = -(-(padded.shape[0] - height) // 2), -(-(padded.shape[1] - width) // 2)
        padded[top_pad : top_pad + height, left_pad : left_pad + width] = pixels
        top = (height - crop_height) // 2 + top_pad
        left = (width - crop_width) // 2 + left_pad
        return padded[max(0, top) : top + crop_height, max(0, left) : left + crop_width]
    top, left = (height - crop_height) // 2, (width - crop_width) // 2
    return pixels[top : top + crop_height, left : left + crop_width]


def _value_table(rescale: float | None, mean: Any, std: Any) -> np.ndarray:
    """transformers' rescale (float64 product, then float32) and normalise (float32) of 0..255."""
    values = np.arange(256, dtype=np.float64)
    scaled = (values * rescale if rescale else values).astype(np.float32)
    rows = np.repeat(scaled[None, :], 3, axis=0)
    if mean is None:
        return rows
    mean32, std32 = np.asarray(mean, dtype=np.float32), np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(((rows.T - mean32) / std32).T, dtype=np.float32)


def _hw(spec: Any) -> tuple[int, int] | None:
    if isinstance(spec, int):
        return spec, spec
    if isinstance(spec, Mapping) and set(spec) == {"height", "width"}:
        return int(spec["height"]), int(spec["width"])
    return None


def image_transform(config: Mapping[str, Any]) -> ImageTransform | None:
    """The transform of a processor config's image part, or None when this module does not
    reproduce it exactly (then use the transformers processor)."""
    kind = _KINDS.get(str(config.get("image_processor_type") or config.get("feature_extractor_type")))
    if kind is None:
        return None
    defaults = _DEFAULTS[kind]
    unknown = {key for key, value in config.items() if key not in defaults and key not in _IGNORED}
    if any(config[key] not in (None, False) for key in unknown):  # e.g. do_pad: true
        return None
    options = {**defaults, **{key: value for key, value in config.items() if key in defaults}}
    shortest_edge = resize_to = crop_to = None
    if options["do_resize"]:
        size = options["size"]
        if kind == "clip" and isinstance(size, int):  # old configs: int means the shorter side
            shortest_edge = size
        elif isinstance(size, Mapping) and set(size) == {"shortest_edge"}:
            shortest_edge = int(size["shortest_edge"])
        else:
            resize_to = _hw(size)
            if resize_to is None:
                return None
    if options["do_center_crop"]:
        crop_to = _hw(options["crop_size"])
        if crop_to is None:
            return None
    if crop_to is None and resize_to is None:
        return None  # the output size would follow the image: not a model input
    mean = std = None
    if options["do_normalize"]:
        mean, std = options["image_mean"], options["image_std"]
        if isinstance(mean, (int, float)):
            mean = [mean] * 3
        if isinstance(std, (int, float)):
            std = [std] * 3
        if len(mean) != 3 or len(std) != 3:
            return None
    rescale = float(options["rescale_factor"]) if options["do_rescale"] else None
    return ImageTransform(
        shortest_edge=shortest_edge,
        resize_to=resize_to,
        resample=int(options["resample"]),
        crop_to=crop_to,
        table=_value_table(rescale, mean, std),
    )


def read_image_config(folder: Path) -> dict[str, Any] | None:
    """The image processor's part of a checkpoint folder's processor config: transformers 5's
    ``processor_config.json`` (nested under ``image_processor``) or the older flat
    ``preprocessor_config.json``; None when neither is there."""
    for name in ("processor_config.json", "preprocessor_config.json"):
        path = folder / name
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict):
            return None
        image = data.get("image_processor", data)
        if isinstance(image, dict) and ("image_processor_type" in image or "feature_extractor_type" in image):
            return image
    return None
