"""The lean image transform gives the transformers processor's pixels exactly, or refuses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from transformers import AutoProcessor

from pixseek.embedding.image_transform import image_transform, read_image_config
from pixseek.media.preprocess import preprocess_image

SIZES = [(320, 240), (240, 320), (500, 375), (32, 32), (31, 17), (1, 1), (3000, 50), (50, 3000), (41, 400)]


def _random_images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in SIZES]


@pytest.mark.parametrize("checkpoint", ["clip_dir", "dual_dir", "altclip_dir"])
def test_pixels_equal_the_processors(checkpoint: str, request: pytest.FixtureRequest) -> None:
    folder: Path = request.getfixturevalue(checkpoint)
    processor = AutoProcessor.from_pretrained(folder).image_processor
    transform = image_transform(read_image_config(folder) or {})
    assert transform is not None
    for image in _random_images():
        expected = preprocess_image(processor, image)
        got = transform(image)
        assert got.dtype == np.float32 and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)  # bit for bit, not approximately


def test_legacy_flat_config_with_int_sizes(tmp_path: Path) -> None:
    """openai/clip-vit-base-patch32's preprocessor_config.json: ints for size and crop_size."""
    legacy = {
        "crop_size": 24,
        "do_center_crop": True,
        "do_normalize": True,
        "do_resize": True,
        "feature_extractor_type": "CLIPFeatureExtractor",
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "resample": 3,
        "size": 24,
    }
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(legacy))
    transform = image_transform(read_image_config(tmp_path) or {})
    assert transform is not None and transform.output_size == (24, 24) and transform.min_side == 24
    from transformers import CLIPImageProcessorPil

    processor = CLIPImageProcessorPil(size={"shortest_edge": 24}, crop_size={"height": 24, "width": 24})
    for image in _random_images():
        np.testing.assert_array_equal(transform(image), preprocess_image(processor, image))


@pytest.mark.parametrize(
    "change",
    [
        {"image_processor_type": "BlipImageProcessor"},  # another processor: not guessed at
        {"do_pad": True},  # an option this transform does not do
        {"size": {"shortest_edge": 24, "longest_edge": 40}},
        {"do_resize": False, "do_center_crop": False},  # output size would follow the image
    ],
)
def test_what_it_does_not_reproduce_is_refused(change: dict[str, object]) -> None:
    config = {"image_processor_type": "CLIPImageProcessor", **change}
    assert image_transform(config) is None


def test_grey_and_rgba_images_are_converted_first(clip_dir: Path) -> None:
    transform = image_transform(read_image_config(clip_dir) or {})
    assert transform is not None
    grey = Image.new("L", (40, 30), 128)
    assert transform(grey).shape == (3, *transform.output_size)
    np.testing.assert_array_equal(transform(grey), transform(grey.convert("RGB")))


def test_folder_without_processor_config(tmp_path: Path) -> None:
    assert read_image_config(tmp_path) is None
    (tmp_path / "processor_config.json").write_text("not json")
    assert read_image_config(tmp_path) is None
