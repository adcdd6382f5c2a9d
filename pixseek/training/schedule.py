"""Learning-rate schedule: linear warm-up, then cosine decay to ``min_ratio`` of the peak.

Warm-up matters more here than usual: the projections and the temperature start from scratch
(``from_vision_text_pretrained`` creates them), and full-size updates through random projections
would first wreck the pretrained towers' features.
"""

from __future__ import annotations

import functools
import math

import torch


def warmup_cosine(step: int, *, warmup: int, total: int, min_ratio: float) -> float:
    """The factor on the peak learning rate for optimizer step ``step`` (0-based)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def make_scheduler(
    optimizer: torch.optim.Optimizer, *, warmup: int, total: int, min_ratio: float = 0.0
) -> torch.optim.lr_scheduler.LambdaLR:
    # A partial of a module-level function rather than a lambda, so the scheduler's state pickles.
    factor = functools.partial(warmup_cosine, warmup=warmup, total=total, min_ratio=min_ratio)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
