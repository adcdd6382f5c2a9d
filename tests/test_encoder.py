"""The towers: parity with transformers' documented usage, bf16 accuracy, padding, clear load errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from PIL import Image

from pixseek.embedding import ModelLoadError, load_encoder
from pixseek.embedding.runtime import cpu_has_native_bf16, resolve_precision

FAMILIES = {
    "clip_dir": ("CLIPModel", "CLIPProcessor"),
    "dual_dir": ("VisionTextDualEncoderModel", "VisionTextDualEncoderProcessor"),
    "altclip_dir": ("AltCLIPModel", "AltCLIPProcessor"),
}
TEXTS = ["a red circle", "un chat sur la plage", "ein Hund", "一只猫在山上", "a car"]


@pytest.fixture(scope="module")
def images(sample_photo_paths: list[Path]) -> list[Image.Image]:
    return [Image.open(p).convert("RGB") for p in sample_photo_paths[:6]]


def _normalised(x: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.normalize(x, dim=-1).numpy()


@pytest.mark.parametrize("fixture", list(FAMILIES))
def test_fp32_vectors_equal_transformers_reference(request, fixture: str, images) -> None:
    checkpoint = request.getfixturevalue(fixture)
    model_class, processor_class = FAMILIES[fixture]
    model = getattr(transformers, model_class).from_pretrained(checkpoint).eval()
    processor = getattr(transformers, processor_class).from_pretrained(checkpoint)
    with torch.no_grad():
        ref_images = _normalised(
            model.get_image_features(**processor(images=images, return_tensors="pt")).pooler_output
        )
        ref_texts = _normalised(
            model.get_text_features(**processor(text=TEXTS, padding=True, return_tensors="pt")).pooler_output
        )

    encoder = load_encoder(str(checkpoint), device="cpu", precision="fp32")
    got_images, got_texts = encoder.embed_images(images), encoder.embed_texts(TEXTS)
    assert got_images.dtype == np.float32 and got_images.shape == (len(images), encoder.dim)
    np.testing.assert_allclose(got_images, ref_images, atol=1e-5)
    np.testing.assert_allclose(got_texts, ref_texts, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got_texts, axis=1), 1.0, atol=1e-5)
    assert encoder.device.type == "cpu" and encoder.precision == "fp32"


def test_bf16_is_close_to_fp32_and_ranks_the_same(clip_dir: Path, sample_photo_paths) -> None:
    rng = np.random.default_rng(0)
    photos = [Image.open(p).convert("RGB") for p in sample_photo_paths if p.suffix in (".png", ".jpg")]
    crops = []
    for _ in range(300):  # distinct images: random crops of the sample photos
        photo = photos[rng.integers(len(photos))]
        w, h = photo.size
        x, y = rng.integers(0, w // 2), rng.integers(0, h // 2)
        crops.append(photo.crop((x, y, x + w // 2, y + h // 2)))
    fp32 = load_encoder(str(clip_dir), device="cpu", precision="fp32")
    bf16 = load_encoder(str(clip_dir), device="cpu", precision="bf16")
    a, b = fp32.embed_images(crops), bf16.embed_images(crops)
    cosine = np.sum(a * b, axis=1)
    assert cosine.min() >= 0.999, cosine.min()
    queries = fp32.embed_texts(TEXTS * 4 + [f"photo {i}" for i in range(20)])
    top_a = np.argsort(-(queries @ a.T), axis=1)[:, :10]
    top_b = np.argsort(-(queries @ b.T), axis=1)[:, :10]
    overlap = np.mean([len(set(x) & set(y)) / 10 for x, y in zip(top_a, top_b, strict=True)])
    assert overlap >= 0.99, overlap


def test_text_queries_are_padded_to_the_longest_only(clip_dir: Path) -> None:
    encoder = load_encoder(str(clip_dir), device="cpu", precision="fp32")
    seen: list[tuple[int, ...]] = []
    original = encoder.model.get_text_features

    def spy(**tokens):
        seen.append(tuple(tokens["input_ids"].shape))
        return original(**tokens)

    encoder.model.get_text_features = spy
    batch = encoder.embed_texts(["a cat", "a red circle on the beach"])
    alone = encoder.embed_texts(["a cat"])
    longest = len(encoder.processor.tokenizer("a red circle on the beach")["input_ids"])
    assert seen[0] == (2, longest) and longest < 77
    np.testing.assert_allclose(batch[0], alone[0], atol=1e-5)  # padding does not change the vector


def test_fingerprint_identifies_weights_not_paths(clip_dir: Path, dual_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(clip_dir, copy)
    a, b = load_encoder(str(clip_dir), device="cpu"), load_encoder(str(copy), device="cpu")
    assert a.fingerprint == b.fingerprint and a.model_id != b.model_id
    assert load_encoder(str(dual_dir), device="cpu").fingerprint != a.fingerprint


def test_load_errors_are_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError) as missing:
        load_encoder("openai/clip-vit-base-patch32")
    message = str(missing.value)
    assert "\n" not in message and "--model" in message and "offline" in message

    bert_dir = tmp_path / "bert"
    transformers.BertModel(
        transformers.BertConfig(
            hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
        )
    ).save_pretrained(bert_dir)
    with pytest.raises(ModelLoadError, match="'bert', not a dual encoder"):
        load_encoder(str(bert_dir))

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match="cannot load model"):
        load_encoder(str(empty))


def test_precision_auto_follows_the_hardware() -> None:
    assert resolve_precision("auto", torch.device("cuda")) == "fp16"
    assert resolve_precision("auto", torch.device("cpu")) == ("bf16" if cpu_has_native_bf16() else "fp32")
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"
    with pytest.raises(ValueError, match="unknown precision"):
        resolve_precision("int8", torch.device("cpu"))
