"""Checkpoints of a training run, and finding the one to resume from.

A checkpoint is a folder ``checkpoint-STEP`` in the output folder: the model and processor as
``save_pretrained`` writes them (loadable on their own) plus ``trainer_state.pt`` with everything
else a resumed run needs to continue as if never stopped: optimizer, scheduler, grad scaler, step,
random state and the options that define the run. It is written under a temporary name and renamed
when complete, so a run killed while saving leaves the previous checkpoint as the latest.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import torch

from pixseek.errors import PixseekError
from pixseek.training.model import save_dual_encoder

STATE_FILE = "trainer_state.pt"
SUMMARY_FILE = "training.json"
_NAME = re.compile(r"checkpoint-(\d+)")


def checkpoints(output: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints in ``output``, oldest first."""
    if not output.is_dir():
        return []
    found = []
    for child in output.iterdir():
        match = _NAME.fullmatch(child.name)
        if match and (child / STATE_FILE).is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def save_checkpoint(
    output: Path, step: int, model: Any, processor: Any, state: dict[str, Any], keep: int
) -> Path:
    final = output / f"checkpoint-{step}"
    partial = output / f".checkpoint-{step}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    save_dual_encoder(model, processor, partial)
    torch.save(state, partial / STATE_FILE)
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    for _, old in checkpoints(output)[:-keep] if keep > 0 else ():
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_state(checkpoint: Path) -> dict[str, Any]:
    # Our own file, holding numpy/python objects besides tensors: weights_only would refuse them.
    return torch.load(checkpoint / STATE_FILE, map_location="cpu", weights_only=False)


def check_fresh_output(output: Path) -> None:
    """A new run must not silently mix with an old one in the same folder."""
    if output.exists() and not output.is_dir():
        raise PixseekError(f"--output {output} is a file, not a folder")
    if checkpoints(output) or (output / "config.json").exists() or (output / SUMMARY_FILE).exists():
        raise PixseekError(
            f"{output} already holds a training run; pass --resume to continue it or choose another --output"
        )


def compare_run(saved: dict[str, Any], current: dict[str, Any]) -> None:
    """Refuse to resume with options that would make the run a different one (data order, schedule)."""
    differences = [
        f"{key} {saved.get(key)!r} -> {current.get(key)!r}"
        for key in sorted(set(saved) | set(current))
        if saved.get(key) != current.get(key)
    ]
    if differences:
        raise PixseekError(
            "cannot resume: options differ from the interrupted run (" + "; ".join(differences) + "); "
            "repeat the original command with --resume"
        )
