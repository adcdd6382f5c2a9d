"""Helpers shared by the benchmarks: progress logging, the full-size checkpoint, machine facts."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import transformers
from PIL import Image

from pixseek.embedding.runtime import cpu_has_native_bf16
from pixseek.testing.tiny_models import build_clip

DEFAULT_WORK_DIR = Path(__file__).resolve().parent / ".work"
CHECKPOINT_NAME = "clip-vit-b32-random"


def log(message: str) -> None:
    """Progress on stderr, so stdout stays the machine-readable report."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def ensure_checkpoint(work_dir: Path) -> Path:
    """The full-size random CLIP ViT-B/32, built once."""
    return ensure_built(work_dir, CHECKPOINT_NAME, build_clip)


def ensure_built(work_dir: Path, name: str, build: Callable[..., Path]) -> Path:
    """Build a full-size random checkpoint once; built in a temp dir and renamed, so a crash leaves none."""
    target = work_dir / name
    if (target / "model.safetensors").exists() and (target / "processor_config.json").exists():
        return target
    log(f"building full-size {name} (random weights) in {target}")
    work_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="ckpt-", dir=work_dir))
    build(staging, full_size=True)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def machine_info() -> dict[str, Any]:
    """What a reader needs to compare numbers across machines."""
    cpu, family, model = "unknown", "?", "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key == "model name" and cpu == "unknown":
                cpu = value
            elif key == "cpu family" and family == "?":
                family = value
            elif key == "model" and model == "?":
                model = value
    return {
        "cpu": cpu,
        "cpu_family_model": f"{family}/{model}",
        "cores": os.cpu_count(),
        "native_bf16": cpu_has_native_bf16(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "transformers": transformers.__version__,
        "pillow": Image.__version__,
        "python": platform.python_version(),
    }
