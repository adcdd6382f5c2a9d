"""The model to train: a new dual encoder built from two towers, or a saved one to continue.

Either way the result is a ``VisionTextDualEncoderModel`` with its ``VisionTextDualEncoderProcessor``,
the pair ``pixseek.embedding.load_encoder`` loads, so the trained folder indexes directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pixseek.embedding.checkpoint import (
    ModelLoadError,
    first_line,
    load_config,
    load_model_and_processor,
    resolve_source,
)

_HINT = "pass a hub id or a local folder holding a saved model with its pre-processor/tokenizer"
# Text towers whose position ids start after the padding index (RoBERTa family) lose two positions.
_OFFSET_POSITION_TEXT_TYPES = {"roberta", "xlm-roberta", "camembert"}


def build_from_towers(vision: str, text: str, projection_dim: int) -> tuple[Any, Any]:
    """A fresh dual encoder: pretrained towers, new random projections and temperature (CLIP's 1/0.07).

    Both towers are checked first, so a typo in either fails as one line before anything loads.
    """
    import transformers

    sources = {}
    for role, name in (("vision", vision), ("text", text)):
        sources[role] = resolve_source(name, {})
        load_config(name, sources[role], f"the {role} tower: {_HINT}")
    try:
        model = transformers.VisionTextDualEncoderModel.from_vision_text_pretrained(
            sources["vision"], sources["text"], projection_dim=projection_dim
        )
        image_processor = transformers.AutoImageProcessor.from_pretrained(sources["vision"])
        tokenizer = transformers.AutoTokenizer.from_pretrained(sources["text"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise ModelLoadError(
            f"cannot build a dual encoder from {vision!r} + {text!r}: {first_line(error)}"
        ) from None
    processor = transformers.VisionTextDualEncoderProcessor(
        image_processor=image_processor, tokenizer=tokenizer
    )
    return model, processor


def load_dual_encoder(name: str) -> tuple[Any, Any]:
    """A saved ``VisionTextDualEncoderModel`` + processor (``--from``, and every checkpoint on resume)."""
    source = resolve_source(name, {})
    hint = "--from needs a folder saved by pixseek train or VisionTextDualEncoderModel.save_pretrained"
    config = load_config(name, source, hint)
    if config.model_type != "vision-text-dual-encoder":
        raise ModelLoadError(f"{name!r} is a {config.model_type!r}, not a vision-text-dual-encoder; {hint}")
    return load_model_and_processor(
        name, source, "VisionTextDualEncoderModel", "VisionTextDualEncoderProcessor", hint
    )


def text_token_limit(model: Any, tokenizer: Any, cap: int) -> int:
    """The longest caption the text tower can take, at most ``cap`` tokens (captions are short;
    truncating the rare long one keeps batches from padding to 512)."""
    text_config = model.config.text_config
    limit = int(getattr(text_config, "max_position_embeddings", cap))
    if text_config.model_type in _OFFSET_POSITION_TEXT_TYPES:
        limit -= 2
    return min(cap, limit, int(getattr(tokenizer, "model_max_length", limit) or limit))


def lock_towers(model: Any, *, image: bool, text: bool) -> None:
    """LiT's locked tower: no gradients, so its weights stay bit-identical (``set_train_mode`` also
    keeps it in eval mode: no dropout, so its outputs can be computed once).

    Only the tower is locked; its projection is trained, since a dual encoder built from towers
    starts with a random one.
    """
    for locked, tower in ((image, model.vision_model), (text, model.text_model)):
        if locked:
            tower.requires_grad_(False)


def set_train_mode(model: Any, *, lock_image: bool, lock_text: bool) -> None:
    model.train()
    if lock_image:
        model.vision_model.eval()
    if lock_text:
        model.text_model.eval()


def trainable_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def save_dual_encoder(model: Any, processor: Any, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
