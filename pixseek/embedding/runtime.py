"""Device and numeric precision choices for the model towers.

``auto`` must do the fast thing on every machine without the user knowing the hardware:
fp16 on CUDA, bf16 on CPUs with native bf16 (AVX512-BF16 or AMX: the CLIP ViT-B/32 image tower
runs 2.2-3.3x faster than fp32 on 2-core AVX512-BF16 machines, docs/benchmarks.md), fp32
elsewhere, where emulated bf16 is slower.

Importing this module costs no torch import: a run whose image tower is compiled
(pixseek.embedding.openvino_tower) decides its device and precision without loading torch at all.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from pixseek.vocabulary import Precision, choices

if TYPE_CHECKING:
    import torch


def resolve_device(device: str) -> torch.device:
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use --device cpu or auto")
    return resolved


def device_type(device: str) -> str:
    """``resolve_device(device).type``, importing torch only when CUDA could be there: with a CPU
    build of torch, or no NVIDIA driver on the machine, ``auto`` is the CPU."""
    if device != "auto":
        return device.split(":", 1)[0]
    if _cpu_only_torch() or not any(os.path.exists(p) for p in ("/proc/driver/nvidia", "/dev/nvidiactl")):
        return "cpu"
    return resolve_device(device).type


def _cpu_only_torch() -> bool:
    try:
        return importlib.metadata.version("torch").endswith("+cpu")
    except importlib.metadata.PackageNotFoundError:
        return True


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Read the CPU flags: torch offers no public query for AVX512-BF16/AMX support."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def resolve_precision(precision: str, device: torch.device | str) -> Precision:
    """The precision ``auto`` means on ``device`` (a torch device or its type); another choice as it is."""
    if precision not in set(Precision):
        raise ValueError(f"unknown precision {precision!r}; choose {choices(Precision)}")
    if precision != Precision.AUTO:
        return Precision(precision)
    kind = device if isinstance(device, str) else device.type
    if kind == "cuda":
        return Precision.FP16
    return Precision.BF16 if cpu_has_native_bf16() else Precision.FP32


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast rather than casting weights: matmuls run in low precision, norms and softmax stay
    fp32. Training uses it as it is (gradients on); inference through :func:`precision_context`."""
    import torch

    if precision == Precision.FP32:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == Precision.BF16 else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


@contextlib.contextmanager
def precision_context(precision: str, device: torch.device) -> Iterator[None]:
    """Inference: no autograd bookkeeping, and :func:`autocast`."""
    import torch

    with torch.inference_mode(), autocast(precision, device):
        yield
