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

from pixseek.vocabulary import Precision, choices

_DTYPES = {Precision.BF16: torch.bfloat16, Precision.FP16: torch.float16}


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


def resolve_precision(precision: str, device: torch.device) -> Precision:
    """The precision ``auto`` means on ``device``; another choice as it is."""
    if precision not in set(Precision):
        raise ValueError(f"unknown precision {precision!r}; choose {choices(Precision)}")
    if precision != Precision.AUTO:
        return Precision(precision)
    if device.type == "cuda":
        return Precision.FP16
    return Precision.BF16 if cpu_has_native_bf16() else Precision.FP32


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast rather than casting weights: matmuls run in low precision, norms and softmax stay
    fp32. Training uses it as it is (gradients on); inference through :func:`precision_context`."""
    if precision == Precision.FP32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[Precision(precision)])


@contextlib.contextmanager
def precision_context(precision: str, device: torch.device) -> Iterator[None]:
    """Inference: no autograd bookkeeping, and :func:`autocast`."""
    with torch.inference_mode(), autocast(precision, device):
        yield
