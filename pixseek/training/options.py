"""What a training run is asked to do, and the checks that refuse a bad request.

The options stand apart from the run so that the CLI can build them and every stage of the run
(setup, resume, the step loop) can read them without importing one another; the checks here need
nothing loaded, so a bad option fails in a second, not after the model and data are loaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from pixseek.errors import PixseekError
from pixseek.vocabulary import Precision


@dataclass
class TrainOptions:
    output: Path
    vision: str | None = None  # towers to build a new dual encoder from ...
    text: str | None = None
    from_model: str | None = None  # ... or a saved dual encoder to continue
    projection_dim: int = 512
    steps: int | None = None  # optimizer steps; None: epochs x steps per epoch
    epochs: float = 1.0
    batch_size: int = 32  # pairs per micro-batch
    accumulate: int = 1  # micro-batches per optimizer step (contrastive over all of them)
    lr: float = 1e-4
    min_lr_ratio: float = 0.0
    warmup: int | None = None  # steps; None: 10% of the run
    weight_decay: float = 0.1
    max_grad_norm: float | None = 1.0
    lock_image: bool = False
    lock_text: bool = False
    device: str = "auto"
    precision: Precision = Precision.AUTO
    seed: int = 0
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    max_text_tokens: int = 64
    eval_every: int = 0  # 0: evaluate before and after only
    cache_mb: int = 2048
    workers: int | None = None
    resume: bool = False


def validate(options: TrainOptions) -> None:
    """Refuse options that contradict each other or are out of range, before anything loads."""
    if options.from_model and (options.vision or options.text):
        raise PixseekError("give either --from DIR or --vision and --text, not both")
    if not options.from_model and not (options.vision and options.text):
        raise PixseekError(
            "give --vision and --text towers to build a dual encoder, or --from DIR to continue one"
        )
    positive = {
        "batch size": options.batch_size,
        "accumulate": options.accumulate,
        "projection dim": options.projection_dim,
    }
    for name, value in positive.items():
        if value < 1:
            raise PixseekError(f"{name} must be >= 1, got {value}")
    if options.steps is not None and options.steps < 1:
        raise PixseekError(f"steps must be >= 1, got {options.steps}")
    if options.epochs <= 0 or not math.isfinite(options.epochs):
        raise PixseekError(f"epochs must be > 0, got {options.epochs}")
    if not (options.lr > 0 and math.isfinite(options.lr)):
        raise PixseekError(f"learning rate must be > 0, got {options.lr}")
    if options.batch_size * options.accumulate < 2:
        raise PixseekError("a contrastive batch needs at least 2 pairs (batch size x accumulate)")
    if options.checkpoint_every < 1:
        raise PixseekError(f"checkpoint every must be >= 1, got {options.checkpoint_every}")
