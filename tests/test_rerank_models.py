"""The re-rankers against transformers' documented per-pair usage: parity, batching, the BLIP-2
``<image>``-token pitfall, bf16 rank agreement, clear load errors."""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from PIL import Image
from scipy.stats import spearmanr

from pixseek.embedding import ModelLoadError
from pixseek.search.rerank import BATCH_SIZE, Reranker, load_reranker
from pixseek.testing.tiny_models import build_blip2, build_bridgetower

TEXTS = ["a black cat on the beach", "un chat noir", "a red car on the road"]
KINDS = ["bridgetower", "blip2"]


@pytest.fixture(scope="module")
def images(sample_photo_paths: list[Path]) -> list[Image.Image]:
    """Sample photos plus noise images of other sizes and aspect ratios."""
    rng = np.random.default_rng(0)
    photos = [Image.open(p).convert("RGB") for p in sample_photo_paths[:7]]
    # Aspect ratios up to 1.5: at the tiny 32 px size, BridgeTower's processor (shorter side 32,
    # longer side capped at 53, both floored to multiples of 32) fails on wider ones.
    shapes = [(40, 60, 3), (60, 40, 3), (50, 50, 3), (90, 70, 3)]
    noise = [Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)) for shape in shapes]
    return photos + noise


def checkpoint(request: pytest.FixtureRequest, kind: str) -> Path:
    return request.getfixturevalue(f"{kind}_dir")


@functools.cache
def documented_model(kind: str, path: Path) -> tuple[torch.nn.Module, transformers.ProcessorMixin]:
    if kind == "bridgetower":
        model = transformers.BridgeTowerForImageAndTextRetrieval.from_pretrained(path).eval()
        return model, transformers.BridgeTowerProcessor.from_pretrained(path)
    model = transformers.Blip2ForImageTextRetrieval.from_pretrained(path).eval()
    return model, transformers.Blip2Processor.from_pretrained(path)


def documented_scores(kind: str, path: Path, text: str, images: list[Image.Image]) -> np.ndarray:
    """The seed documents' loop: one ``processor(image, text)`` and one forward per pair, softmax once."""
    model, processor = documented_model(kind, path)
    scores = []
    with torch.no_grad():
        for image in images:
            if kind == "bridgetower":
                logits = model(**processor(image, text, return_tensors="pt")).logits
            else:
                inputs = processor(images=image, text=text, return_tensors="pt")
                logits = model(**inputs, use_image_text_matching_head=True).logits_per_image
            scores.append(torch.softmax(logits, dim=-1)[0, 1].item())
    return np.array(scores)


@pytest.mark.parametrize("kind", KINDS)
def test_batched_scores_equal_the_documented_per_pair_loop(request, kind: str, images) -> None:
    path = checkpoint(request, kind)
    reranker = load_reranker(kind, str(path), device="cpu", precision="fp32")
    exact = load_reranker(kind, str(path), device="cpu", precision="fp32")
    exact.feature_dtype = np.dtype(np.float32)  # the split forward alone: no storage rounding
    for text in TEXTS:
        want = documented_scores(kind, path, text, images)
        assert np.ptp(want) > 0.05  # the tiny checkpoints tell images apart, so parity means something
        got = reranker.score(text, images)
        assert got.shape == (len(images),) and got.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=1e-4)  # features pass through float16, as cached
        np.testing.assert_allclose(exact.score(text, images), want, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_one_query_against_many_images_per_forward(request, kind: str, images) -> None:
    reranker = load_reranker(kind, str(checkpoint(request, kind)), device="cpu", precision="fp32")
    calls: list[int] = []
    original = reranker.score_features

    def spy(text: str, features: np.ndarray) -> np.ndarray:
        calls.append(len(features))
        return original(text, features)

    reranker.score_features = spy
    many = images * (BATCH_SIZE // len(images) + 1)
    reranker.score(TEXTS[0], many)
    assert calls == [BATCH_SIZE, len(many) - BATCH_SIZE]


def test_blip2_image_token_pitfall(blip2_dir: Path, images) -> None:
    """``Blip2Processor`` prepends <image> tokens when given images and text together, and the model
    strips that many leading tokens. Text tokenised alone and fed to the model loses its first real
    tokens; pixseek tokenises alone but feeds the Q-Former itself, and matches the documented use."""
    model = transformers.Blip2ForImageTextRetrieval.from_pretrained(blip2_dir).eval()
    processor = transformers.Blip2Processor.from_pretrained(blip2_dir)
    text = TEXTS[0]
    together = processor(images=images[0], text=text, return_tensors="pt")
    image_id = model.config.image_token_index
    queries = model.config.num_query_tokens
    assert together["input_ids"][0, :queries].tolist() == [image_id] * queries
    alone = processor(text=text, return_tensors="pt")
    assert image_id not in alone["input_ids"][0].tolist()
    with torch.no_grad():
        right = model(**together, use_image_text_matching_head=True).logits_per_image.softmax(-1)[0, 1]
        wrong_inputs = {**alone, "pixel_values": together["pixel_values"]}
        wrong = model(**wrong_inputs, use_image_text_matching_head=True).logits_per_image.softmax(-1)[0, 1]
    assert abs(right.item() - wrong.item()) > 1e-3  # the pitfall is real on this checkpoint

    reranker = load_reranker("blip2", str(blip2_dir), device="cpu", precision="fp32")
    assert reranker.score(text, images[:1])[0] == pytest.approx(right.item(), abs=1e-4)


def test_blip2_config_without_image_tokens(blip2_dir: Path, tmp_path: Path, images) -> None:
    """Checkpoints saved before <image> tokens existed (no image_token_index, processor without
    num_query_tokens): the model then prepends the query mask itself; pixseek scores them alike."""
    legacy = tmp_path / "legacy"
    shutil.copytree(blip2_dir, legacy)
    for name, key in (("config.json", "image_token_index"), ("processor_config.json", "num_query_tokens")):
        data = json.loads((legacy / name).read_text())
        data.pop(key)
        (legacy / name).write_text(json.dumps(data))
    assert transformers.Blip2Config.from_pretrained(legacy).image_token_index is None
    want = documented_scores("blip2", legacy, TEXTS[1], images)
    got = load_reranker("blip2", str(legacy), device="cpu", precision="fp32").score(TEXTS[1], images)
    np.testing.assert_allclose(got, want, atol=1e-4)
    # Same weights, other plumbing: the documented use gives the same scores both ways.
    np.testing.assert_allclose(want, documented_scores("blip2", blip2_dir, TEXTS[1], images), atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_bf16_ranks_candidates_like_fp32(request, kind: str, sample_photo_paths, record_property) -> None:
    rng = np.random.default_rng(1)
    photos = [Image.open(p).convert("RGB") for p in sample_photo_paths if p.suffix in (".png", ".jpg")]
    crops = []
    for _ in range(48):  # distinct candidates: random crops of the sample photos
        photo = photos[rng.integers(len(photos))]
        side = min(photo.size) // 2
        x, y = rng.integers(0, photo.size[0] - side), rng.integers(0, photo.size[1] - side)
        crops.append(photo.crop((x, y, x + side, y + side)))
    path = str(checkpoint(request, kind))
    fp32 = load_reranker(kind, path, device="cpu", precision="fp32")
    bf16 = load_reranker(kind, path, device="cpu", precision="bf16")
    for text in TEXTS:
        a, b = fp32.score(text, crops), bf16.score(text, crops)
        rho = spearmanr(a, b).statistic
        record_property(f"spearman {text}", round(float(rho), 4))  # in --junitxml reports
        assert rho >= 0.95, (text, rho, np.abs(a - b).max())


def test_fingerprint_identifies_weights_not_paths(bridgetower_dir: Path, blip2_dir: Path, tmp_path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(bridgetower_dir, copy)
    a = load_reranker("bridgetower", str(bridgetower_dir), device="cpu")
    b = load_reranker("bridgetower", str(copy), device="cpu", precision="fp32")
    assert a.fingerprint == b.fingerprint and a.model_id != b.model_id
    assert load_reranker("blip2", str(blip2_dir), device="cpu").fingerprint != a.fingerprint
    assert isinstance(a, Reranker) and a.feature_bytes == np.prod(a.feature_shape) * 2


def test_load_errors_are_one_clear_line(bridgetower_dir: Path, blip2_dir: Path, clip_dir: Path) -> None:
    with pytest.raises(ModelLoadError) as missing:
        load_reranker("blip2", "blip2-coco")
    message = str(missing.value)
    assert "\n" not in message and "offline" in message and "--blip2-model" in message
    with pytest.raises(ModelLoadError, match="'blip-2', not a bridgetower ITM model"):
        load_reranker("bridgetower", str(blip2_dir))
    with pytest.raises(ModelLoadError, match="'clip', not a blip2 ITM model"):
        load_reranker("blip2", str(clip_dir))
    with pytest.raises(ValueError, match="unknown re-ranker"):
        load_reranker("vilt", str(bridgetower_dir))


@pytest.mark.parametrize(("kind", "build"), [("bridgetower", build_bridgetower), ("blip2", build_blip2)])
def test_tiny_rerankers_rebuild_byte_identical(request, kind: str, build, tmp_path: Path) -> None:
    first, again = checkpoint(request, kind), build(tmp_path)
    names = sorted(p.name for p in first.iterdir())
    assert "model.safetensors" in names and names == sorted(p.name for p in again.iterdir())
    for name in names:
        assert (first / name).read_bytes() == (again / name).read_bytes(), name
