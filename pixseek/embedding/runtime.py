"""Device and numeric precision choices for the model towers.

``auto`` must do the fast thing on every machine without the user knowing the hardware:
fp16 on CUDA, bf16 autocast on CPUs with native bf16 (AVX512-BF16 or AMX: the CLIP ViT-B/32 image
tower runs 2.2x faster than fp32 on a 2-core AVX512-BF16 machine, docs/benchmarks.md), fp32
elsewhere, where emulated bf16 is slower.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use --device cpu or auto")
    return resolved


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Read the CPU flags: torch offers no public query for AVX512-BF16/AMX support."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "fp16"
    return "bf16" if cpu_has_native_bf16() else "fp32"


@contextlib.contextmanager
def precision_context(precision: str, device: torch.device) -> Iterator[None]:
    """Autocast rather than casting weights: matmuls run in low precision, norms and softmax stay fp32."""
    with torch.inference_mode():
        if precision == "fp32":
            yield
        else:
            with torch.autocast(device_type=device.type, dtype=_DTYPES[precision]):
                yield
