"""Run a checkpoint's image processor on one decoded image, with memory bounded by what it keeps.

The decoder's pixel limit bounds the decoded image, not the processor's work: CLIP-style
processors scale the *shorter* side up to the model size (224) before centre-cropping, so a 35 kB,
1 x 10000 PNG becomes a 224 x 2,240,000 array (5 GB and 23 s), and 1 x 100000 runs out of memory.

Those processors only ever keep the centre of an elongated image: after the resize, the centre crop
is at most one shorter side long along the longer side. So cutting anything more elongated than
MAX_ASPECT_RATIO down to that ratio, around the same centre, before the processor runs changes
nothing it keeps for images up to 10:1 (they are not touched at all) and bounds the work for
hostile ones. Processors that resize to a fixed height x width (ViT, BLIP, BLIP-2) or cap the
longer side (BridgeTower: 1333/800 of the shorter one) are bounded already and keep the whole
image, so they are left alone: cropping would change what they see.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

MAX_ASPECT_RATIO = 10


def preprocess_image(image_processor: Any, image: Image.Image) -> np.ndarray:
    """Model-ready float32 pixels (C, H, W) of one RGB image; thread-safe like the processor."""
    if keeps_only_centre(image_processor):
        image = crop_to_aspect_ratio(image, MAX_ASPECT_RATIO)
    pixel_values = image_processor(images=[image], return_tensors="np")["pixel_values"]
    return np.asarray(pixel_values[0], dtype=np.float32)


def keeps_only_centre(image_processor: Any) -> bool:
    """Whether the processor resizes the shorter side alone (no cap on the longer one) and then
    centre-crops to a height x width no larger than that side, as CLIPImageProcessor does: then
    at most the centre square of an image is ever seen (the transformers source is the authority)."""
    resizes, crops = (getattr(image_processor, name, False) for name in ("do_resize", "do_center_crop"))
    if not (resizes and crops):
        return False
    size = dict(getattr(image_processor, "size", None) or {})
    crop = dict(getattr(image_processor, "crop_size", None) or {})
    if set(size) != {"shortest_edge"} or not {"height", "width"} <= set(crop):
        return False
    return max(crop["height"], crop["width"]) <= size["shortest_edge"]


def crop_to_aspect_ratio(image: Image.Image, max_ratio: int) -> Image.Image:
    """The centre of ``image`` along its longer side, at most ``max_ratio`` times its shorter side.

    The kept length has the parity of the full length, so the crop's centre is exactly the image's
    centre, where the processor's own centre crop looks. Images within the ratio come back as they are.
    """
    width, height = image.size
    short, long = min(width, height), max(width, height)
    keep = short * max_ratio
    if long <= keep:
        return image
    keep += (long - keep) % 2
    start = (long - keep) // 2
    box = (start, 0, start + keep, height) if width > height else (0, start, width, start + keep)
    return image.crop(box)
