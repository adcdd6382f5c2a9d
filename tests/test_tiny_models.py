"""The offline tiny checkpoints (conftest builds them) load with the explicit classes and embed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import (
    AltCLIPModel,
    AltCLIPProcessor,
    CLIPModel,
    CLIPProcessor,
    VisionTextDualEncoderModel,
    VisionTextDualEncoderProcessor,
)

from pixseek.testing.tiny_models import (
    CORPUS,
    IMAGE_SIZE,
    PROJECTION_DIM,
    build_altclip,
    build_clip,
    build_dual_encoder,
    main,
)

CASES = {
    "clip": (build_clip, CLIPModel, CLIPProcessor),
    "dual": (build_dual_encoder, VisionTextDualEncoderModel, VisionTextDualEncoderProcessor),
    "altclip": (build_altclip, AltCLIPModel, AltCLIPProcessor),
}
MULTILINGUAL = [
    "a red circle",
    "un cercle rouge",
    "ein roter Kreis",
    "un perro en la playa",
    "一只猫",
    "赤い車",
]


@pytest.fixture(params=sorted(CASES))
def built(request: pytest.FixtureRequest) -> tuple[str, Path]:
    """Each kind's checkpoint, from conftest's session fixtures (which also force HF_HUB_OFFLINE=1)."""
    return request.param, request.getfixturevalue(f"{request.param}_dir")


def test_loads_with_explicit_classes_and_embeds(built: tuple[str, Path]) -> None:
    kind, path = built
    _, model_cls, processor_cls = CASES[kind]
    model = model_cls.from_pretrained(path).eval()
    processor = processor_cls.from_pretrained(path)
    text = processor(text=["a red circle", "un cercle rouge"], padding=True, return_tensors="pt")
    images = processor(images=[Image.new("RGB", (50, 40), (200, 30, 30))], return_tensors="pt")
    assert images["pixel_values"].shape == (1, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert model.config.vision_config.image_size == IMAGE_SIZE
    with torch.no_grad():
        text_emb = model.get_text_features(**text).pooler_output
        image_emb = model.get_image_features(pixel_values=images["pixel_values"]).pooler_output
    assert text_emb.shape == (2, PROJECTION_DIM)
    assert image_emb.shape == (1, PROJECTION_DIM)
    assert torch.isfinite(text_emb).all() and torch.isfinite(image_emb).all()


def test_tokenizer_knows_multilingual_captions(built: tuple[str, Path]) -> None:
    kind, path = built
    _, model_cls, processor_cls = CASES[kind]
    tokenizer = processor_cls.from_pretrained(path).tokenizer
    text_config = model_cls.config_class.from_pretrained(path).text_config
    assert text_config.vocab_size >= len(tokenizer)
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):  # CLIP pools at eos, all pad at pad
        if getattr(tokenizer, name) is not None:
            assert getattr(text_config, name) == getattr(tokenizer, name), name
    assert set(MULTILINGUAL) <= set(CORPUS)
    for caption in MULTILINGUAL:
        ids = tokenizer(caption, add_special_tokens=False)["input_ids"]
        assert ids and tokenizer.unk_token_id not in ids, (caption, tokenizer.convert_ids_to_tokens(ids))


def test_rebuild_is_byte_identical(built: tuple[str, Path], tmp_path: Path) -> None:
    kind, path = built
    again = CASES[kind][0](tmp_path)
    names = sorted(p.name for p in path.iterdir())
    assert names == sorted(p.name for p in again.iterdir())
    assert "model.safetensors" in names
    for name in names:
        assert (path / name).read_bytes() == (again / name).read_bytes(), name


def test_cli_builds_and_prints_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["dual", str(tmp_path / "dual")])
    assert capsys.readouterr().out.strip() == str(tmp_path / "dual")
    assert (tmp_path / "dual" / "model.safetensors").is_file()
    with pytest.raises(SystemExit):
        main(["altclip", str(tmp_path / "x"), "--full-size"])
