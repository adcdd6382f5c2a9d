"""Package attributes imported on first use (PEP 562), so that importing a package for its light
names (presets, vocabulary) does not import torch or transformers for its heavy ones."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_attributes(package: str, sources: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``sources`` maps each name to the module that
    defines it, imported when the name is first read."""

    def __getattr__(name: str) -> Any:
        module = sources.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return __getattr__
