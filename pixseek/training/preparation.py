"""Everything a training run needs before its first step: device and precision, the model (new,
continued or resumed), the scanned data and the length of the run.

Every check that can refuse a run on what it was given (a precision the device lacks, nothing to
resume, a broken held-out image, too few usable images, a warm-up longer than the run) is here, so
it fails before the optimizer, the locked-tower features or any step cost anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pixseek.embedding.checkpoint import image_min_side
from pixseek.embedding.runtime import resolve_device, resolve_precision
from pixseek.errors import PixseekError
from pixseek.evaluation.dataset import CaptionSet
from pixseek.training import checkpoints as ckpt
from pixseek.training.data import BatchPlan, ImageLoader, Progress, TrainingSet, scan
from pixseek.training.model import (
    build_from_towers,
    load_dual_encoder,
    lock_towers,
    set_train_mode,
    text_token_limit,
)
from pixseek.training.options import TrainOptions, validate
from pixseek.vocabulary import Precision


@dataclass
class PreparedRun:
    """A run ready to step: the model on its device in training mode, the data it will see."""

    output: Path
    device: torch.device
    precision: Precision
    model: Any
    processor: Any
    resume_from: Path | None  # the checkpoint to continue from; None for a new run
    loader: ImageLoader
    training: TrainingSet
    plan: BatchPlan
    total: int  # optimizer steps of the whole run
    warmup: int
    max_tokens: int  # captions are truncated to this many tokens


def prepare_run(
    options: TrainOptions,
    data: CaptionSet,
    eval_data: CaptionSet | None,
    on_scan: Progress | None = None,
) -> PreparedRun:
    """Load and check everything the run needs, in the order that refuses a bad run soonest; the
    model is placed on its device with its locked towers frozen."""
    validate(options)
    output = Path(options.output)
    device = resolve_device(options.device)
    precision = _training_precision(options, device)
    model, processor, resume_from = _open_model(options, output)
    loader = ImageLoader(
        processor.image_processor, image_min_side(processor.image_processor), options.cache_mb << 20
    )
    training = _scan(options, data, eval_data, loader, on_scan)
    plan = BatchPlan(len(training.usable), options.batch_size * options.accumulate, options.seed)
    total = options.steps or max(1, round(options.epochs * plan.steps_per_epoch))
    warmup = options.warmup if options.warmup is not None else round(0.1 * total)
    if warmup < 0 or (warmup >= total and total > 1):
        raise PixseekError(f"warm-up must be between 0 and {total - 1} steps, got {warmup}")

    lock_towers(model, image=options.lock_image, text=options.lock_text)
    model.to(device)
    set_train_mode(model, lock_image=options.lock_image, lock_text=options.lock_text)
    max_tokens = text_token_limit(model, processor.tokenizer, options.max_text_tokens)
    return PreparedRun(
        output,
        device,
        precision,
        model,
        processor,
        resume_from,
        loader,
        training,
        plan,
        total,
        warmup,
        max_tokens,
    )


def _training_precision(options: TrainOptions, device: torch.device) -> Precision:
    """The precision to train in, refused where the device cannot train in it."""
    precision = resolve_precision(options.precision, device)
    if options.precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported():
        # For training, bf16 where the GPU has it: fp16's range needs a grad scaler.
        precision = Precision.BF16
    if precision == "fp16" and device.type != "cuda":
        raise PixseekError(
            "fp16 training needs CUDA (it needs a grad scaler and fp16 kernels); use bf16 or fp32"
        )
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise PixseekError("this GPU has no bf16; use --precision fp16")
    return precision


def _open_model(options: TrainOptions, output: Path) -> tuple[Any, Any, Path | None]:
    """(model, processor, the checkpoint to resume from): the latest checkpoint with ``--resume``,
    else a continued or newly built dual encoder in an output folder that holds no other run."""
    if options.resume:
        summary = output / ckpt.SUMMARY_FILE
        if summary.is_file() and json.loads(summary.read_text()).get("finished"):
            raise PixseekError(f"the run in {output} already finished; nothing to resume")
        found = ckpt.checkpoints(output)
        if not found:
            raise PixseekError(f"no checkpoint to resume in {output}; start without --resume")
        resume_from = found[-1][1]
        model, processor = load_dual_encoder(str(resume_from))
        return model, processor, resume_from
    ckpt.check_fresh_output(output)
    torch.manual_seed(options.seed)  # the fresh projections
    if options.from_model:
        model, processor = load_dual_encoder(options.from_model)
    else:
        assert options.vision and options.text, "checked by validate"
        model, processor = build_from_towers(options.vision, options.text, options.projection_dim)
    return model, processor, None


def _scan(
    options: TrainOptions,
    data: CaptionSet,
    eval_data: CaptionSet | None,
    loader: ImageLoader,
    on_scan: Progress | None,
) -> TrainingSet:
    """The training images that decode; refused when a held-out image is broken or fewer than one
    batch decode."""
    training = scan(data, loader, workers=options.workers, progress=on_scan)
    if eval_data is not None:  # fail now, not after hours of training, on a broken held-out image
        held_out = scan(
            eval_data, ImageLoader(loader.image_processor, loader.min_side, 0), workers=options.workers
        )
        if held_out.skipped:
            path, reason = held_out.skipped[0]
            raise PixseekError(
                f"held-out image {path}: {reason} ({len(held_out.skipped)} broken); "
                "the evaluation set must decode in full"
            )
    pairs_per_step = options.batch_size * options.accumulate
    if len(training.usable) < pairs_per_step:
        raise PixseekError(
            f"{len(training.usable)} usable training images ({len(training.skipped)} skipped), fewer than "
            f"one batch of {pairs_per_step} pairs; lower --batch-size or --accumulate"
        )
    return training
