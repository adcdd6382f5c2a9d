"""Open a checkpoint by preset name, hub id or local directory, with one-line errors.

The towers and the re-rankers load different model classes but fail the same ways (no such
directory, no hub offline, wrong kind of model); sharing this keeps their messages alike.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pixseek.errors import PixseekError


class ModelLoadError(PixseekError):
    """A one-line, actionable reason why a model could not be loaded."""


def first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]


def resolve_source(name: str, presets: Mapping[str, str]) -> str:
    """A preset's hub id, an existing local directory as an absolute path, or ``name`` as a hub id."""
    source = presets.get(name, name)
    local = Path(source).expanduser()
    return str(local.resolve()) if local.exists() else source


def load_config(name: str, source: str, hint: str) -> Any:
    """The checkpoint's config; a missing or unreadable checkpoint becomes a ModelLoadError."""
    import transformers

    try:
        return transformers.AutoConfig.from_pretrained(source)
    except (OSError, ValueError, KeyError) as error:
        offline = ""
        if not Path(source).exists() and os.environ.get("HF_HUB_OFFLINE") == "1":
            offline = " (offline: no model hub reachable)"
        raise ModelLoadError(f"cannot load model {name!r}{offline}: {first_line(error)}; {hint}") from None


def load_model_and_processor(
    name: str, source: str, model_class: str, processor_class: str, hint: str
) -> tuple[Any, Any]:
    """Both halves of a checkpoint with their explicit transformers classes (AutoModel would build
    the wrong head for some folders); a failure becomes a ModelLoadError."""
    import transformers

    try:
        model = getattr(transformers, model_class).from_pretrained(source)
        processor = getattr(transformers, processor_class).from_pretrained(source)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ModelLoadError(f"cannot load model {name!r}: {first_line(error)}; {hint}") from None
    return model, processor


def image_min_side(image_processor: Any) -> int:
    """The largest side length an image processor's resize/crop asks for.

    The decoder may shrink a JPEG (draft mode) down to this shorter side without losing detail the
    processor would keep.
    """
    sides = [
        value
        for spec in (getattr(image_processor, "size", None), getattr(image_processor, "crop_size", None))
        if spec
        for key, value in dict(spec).items()
        if key in ("height", "width", "shortest_edge")
    ]
    return max(sides, default=224)
