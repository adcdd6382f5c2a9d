"""Open a checkpoint by preset name, hub id or local directory, with one-line errors.

The towers and the re-rankers load different model classes but fail the same ways (no such
directory, no hub offline, wrong kind of model); sharing this keeps their messages alike.

A hub id is looked up in the local cache first and the hub is asked only for what is not cached,
after a quick check that it can be reached: without that, a machine without network spends ~30 s
in huggingface_hub's retries (each one a warning) before the same "cannot connect" error.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pixseek.errors import PixseekError
from pixseek.vocabulary import Precision

if TYPE_CHECKING:
    import torch


class ModelLoadError(PixseekError):
    """A one-line, actionable reason why a model could not be loaded."""


def first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]


# A hub id: NAME (legacy) or ORG/NAME, letters, digits, '-', '_', '.', not starting with '.' or '-'.
_HUB_ID = re.compile(r"^[A-Za-z0-9_][\w.-]*(/[A-Za-z0-9_][\w.-]*)?$")
HUB_CHECK_SECONDS = 2.5


def looks_like_path(name: str) -> bool:
    """Whether ``name`` can only be meant as a folder: absolute, ``./``, ``../``, ``~``, a
    backslash, more than one '/', or anything else a hub id cannot be. ``org/name`` stays a hub id
    (an existing folder of that name is found before this is asked)."""
    return name.startswith(("/", ".", "~")) or not _HUB_ID.match(name)


def resolve_source(name: str, presets: Mapping[str, str]) -> str:
    """A preset's hub id, an existing local directory as an absolute path, or ``name`` as a hub id;
    a path that does not exist is a ModelLoadError (the hub would say "Repo id must be...")."""
    source = presets.get(name, name)
    local = Path(source).expanduser()
    if local.exists():  # an existing folder wins, even when it reads like ORG/NAME
        return str(local.resolve())
    if looks_like_path(source):
        raise ModelLoadError(f"no model folder at {os.path.abspath(local)}")
    return source


def _connects(host: str, port: int, seconds: float) -> bool:
    """Whether a TCP connection to ``host`` opens within ``seconds``, name lookup included (run in
    a thread: getaddrinfo has no timeout of its own)."""
    opened: list[bool] = []

    def connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=seconds):
                opened.append(True)
        except OSError:
            opened.append(False)

    thread = threading.Thread(target=connect, name="pixseek-hub-check", daemon=True)
    thread.start()
    thread.join(seconds)
    return bool(opened and opened[0])


def hub_reachable(endpoint: str, seconds: float = HUB_CHECK_SECONDS) -> bool:
    """Whether the hub at ``endpoint`` (or the HTTP proxy the environment routes it through)
    accepts a connection: a cheap stand-in for the first request, which would be retried for ~30 s."""
    parts = urllib.parse.urlsplit(endpoint)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parts.scheme) or urllib.request.getproxies().get("all")
    if proxy and not urllib.request.proxy_bypass(host):
        proxied = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = proxied.hostname or "", proxied.port or 80
    return _connects(host, port, seconds)


def _require_hub(name: str, source: str, hint: str) -> None:
    """Fail in one line, at once, when the hub cannot serve ``source`` (switched off or unreachable)."""
    from huggingface_hub import constants

    # "a folder here": ORG/NAME may have been meant as a relative folder, which does not exist
    model = repr(name) if name == source else f"{name!r} ({source})"
    missing = f"model {model} is neither a folder here nor in the local cache"
    if constants.is_offline_mode():
        raise ModelLoadError(f"{missing}, and the model hub is offline (HF_HUB_OFFLINE is set); {hint}")
    if not hub_reachable(constants.ENDPOINT):
        raise ModelLoadError(f"{missing}, and the model hub {constants.ENDPOINT} is unreachable; {hint}")


def _from_pretrained(load: Callable[..., Any], name: str, source: str, hint: str) -> Any:
    """``load(source)``: a local folder as it is; a hub id from the local cache if it is there
    (no request at all), else from the hub once :func:`_require_hub` found it reachable."""
    if os.path.isabs(source):  # resolve_source made every existing folder absolute
        return load(source)
    try:
        return load(source, local_files_only=True)
    except OSError:  # not (completely) cached
        _require_hub(name, source, hint)
    return load(source)


def load_config(name: str, source: str, hint: str) -> Any:
    """The checkpoint's config; a missing or unreadable checkpoint becomes a ModelLoadError."""
    import transformers

    try:
        return _from_pretrained(transformers.AutoConfig.from_pretrained, name, source, hint)
    except (OSError, ValueError, KeyError) as error:
        raise ModelLoadError(f"cannot load model {name!r}: {first_line(error)}; {hint}") from None


def load_model_and_processor(
    name: str, source: str, model_class: str, processor_class: str, hint: str
) -> tuple[Any, Any]:
    """Both halves of a checkpoint with their explicit transformers classes (AutoModel would build
    the wrong head for some folders); a failure becomes a ModelLoadError."""
    import transformers

    try:
        classes = getattr(transformers, model_class), getattr(transformers, processor_class)
        model, processor = (_from_pretrained(cls.from_pretrained, name, source, hint) for cls in classes)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ModelLoadError(f"cannot load model {name!r}: {first_line(error)}; {hint}") from None
    return model, processor


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A checkpoint's model and processor, and where and how they will run."""

    model: Any
    processor: Any
    device: torch.device
    precision: Precision


def load_for_inference(
    name: str, source: str, model_class: str, processor_class: str, hint: str, device: str, precision: str
) -> LoadedCheckpoint:
    """The tail every model loader shares: resolve the device and precision first (a bad
    ``--device`` fails before gigabytes load), then both halves of the checkpoint."""
    from pixseek.embedding.runtime import resolve_device, resolve_precision

    torch_device = resolve_device(device)
    resolved = resolve_precision(precision, torch_device)
    model, processor = load_model_and_processor(name, source, model_class, processor_class, hint)
    return LoadedCheckpoint(model, processor, torch_device, resolved)


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
