"""The training run: build or continue the model, scan the data, step, checkpoint, evaluate, save.

Everything a run depends on (data order, dropout, schedule) is a function of its options and the
step, and a checkpoint holds all the state that changes, so an interrupted run that is resumed ends
with the same weights as one that never stopped.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pixseek.embedding.checkpoint import image_min_side
from pixseek.embedding.encoder import DualEncoder
from pixseek.embedding.runtime import resolve_device, resolve_precision
from pixseek.errors import PixseekError
from pixseek.evaluation.dataset import CaptionSet
from pixseek.evaluation.metrics import RetrievalMetrics
from pixseek.evaluation.runner import evaluate
from pixseek.training import checkpoints as ckpt
from pixseek.training import frozen
from pixseek.training.data import Batch, BatchPlan, ImageLoader, Prefetcher, TrainingSet, collate, scan
from pixseek.training.loss import clamp_logit_scale
from pixseek.training.model import (
    build_from_towers,
    load_dual_encoder,
    lock_towers,
    set_train_mode,
    text_token_limit,
    trainable_parameters,
)
from pixseek.training.schedule import make_scheduler
from pixseek.training.step import contrastive_backward
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


@dataclass
class EvalPoint:
    step: int
    text_to_image: RetrievalMetrics
    image_to_text: RetrievalMetrics | None
    per_language: dict[str, dict[str, RetrievalMetrics]]


@dataclass
class TrainReport:
    output: str
    steps: int
    start_step: int
    batch_size: int  # pairs per optimizer step
    images: int
    captions: int
    trainable_parameters: int
    device: str
    precision: str
    seconds: float  # training steps and checkpoints, without evaluations
    pairs_per_second: float
    first_loss: float | None
    final_loss: float | None  # mean over the last 10 steps
    skipped: list[tuple[str, str]] = field(default_factory=list)
    evaluations: list[EvalPoint] = field(default_factory=list)


class TrainingInterrupted(PixseekError):
    """Ctrl-C: the run was checkpointed and can be resumed."""

    def __init__(self, step: int, checkpoint: Path) -> None:
        super().__init__(f"interrupted at step {step}; saved {checkpoint}")
        self.step = step
        self.checkpoint = checkpoint


# step, total steps, loss, learning rate
StepCallback = Callable[[int, int, float, float], None]
ScanCallback = Callable[[int, int], None]


def _validate(options: TrainOptions) -> None:
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


def _optimizer(model: torch.nn.Module, options: TrainOptions) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases, norms and the temperature (CLIP's recipe)."""
    decay: list[torch.nn.Parameter] = []
    plain: list[torch.nn.Parameter] = []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (decay if parameter.ndim >= 2 else plain).append(parameter)
    groups = [{"params": decay, "weight_decay": options.weight_decay}, {"params": plain, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=options.lr, betas=(0.9, 0.98), eps=1e-6)


def _run_identity(options: TrainOptions, training: TrainingSet, total: int, warmup: int) -> dict[str, Any]:
    """What must match for a resumed run to be the same run."""
    return {
        "vision": options.vision,
        "text": options.text,
        "from": options.from_model,
        "projection_dim": options.projection_dim if not options.from_model else None,
        "steps": total,
        "warmup": warmup,
        "batch_size": options.batch_size,
        "accumulate": options.accumulate,
        "lr": options.lr,
        "min_lr_ratio": options.min_lr_ratio,
        "weight_decay": options.weight_decay,
        "max_grad_norm": options.max_grad_norm,
        "lock_image": options.lock_image,
        "lock_text": options.lock_text,
        "seed": options.seed,
        "max_text_tokens": options.max_text_tokens,
        "images": len(training.usable),
        "captions": len(training.data.captions),
    }


def _evaluate(
    model: Any,
    processor: Any,
    device: torch.device,
    precision: str,
    data: CaptionSet,
    step: int,
    lock_image: bool,
    lock_text: bool,
) -> EvalPoint:
    encoder = DualEncoder(model, processor, "training", device, precision)  # switches to eval mode
    try:
        report = evaluate(encoder, data, batch_size=64)
    finally:
        set_train_mode(model, lock_image=lock_image, lock_text=lock_text)
    return EvalPoint(step, report.text_to_image["first"], report.image_to_text, report.per_language)


def _eval_point(saved: dict[str, Any]) -> EvalPoint:
    """An evaluation back from a checkpoint, where ``asdict`` stored it as plain dicts."""

    def metrics(value: dict[str, Any]) -> RetrievalMetrics:
        return RetrievalMetrics(**value)

    return EvalPoint(
        step=saved["step"],
        text_to_image=metrics(saved["text_to_image"]),
        image_to_text=metrics(saved["image_to_text"]) if saved["image_to_text"] is not None else None,
        per_language={
            language: {direction: metrics(m) for direction, m in by_direction.items()}
            for language, by_direction in saved["per_language"].items()
        },
    )


def train(
    options: TrainOptions,
    data: CaptionSet,
    *,
    eval_data: CaptionSet | None = None,
    on_scan: ScanCallback | None = None,
    on_step: StepCallback | None = None,
    on_eval: Callable[[EvalPoint], None] | None = None,
) -> TrainReport:
    _validate(options)
    output = Path(options.output)
    device = resolve_device(options.device)
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

    resume_from: Path | None = None
    if options.resume:
        summary = output / ckpt.SUMMARY_FILE
        if summary.is_file() and json.loads(summary.read_text()).get("finished"):
            raise PixseekError(f"the run in {output} already finished; nothing to resume")
        found = ckpt.checkpoints(output)
        if not found:
            raise PixseekError(f"no checkpoint to resume in {output}; start without --resume")
        resume_from = found[-1][1]
        model, processor = load_dual_encoder(str(resume_from))
    else:
        ckpt.check_fresh_output(output)
        torch.manual_seed(options.seed)  # the fresh projections
        if options.from_model:
            model, processor = load_dual_encoder(options.from_model)
        else:
            assert options.vision and options.text, "checked by _validate"
            model, processor = build_from_towers(options.vision, options.text, options.projection_dim)

    loader = ImageLoader(
        processor.image_processor, image_min_side(processor.image_processor), options.cache_mb << 20
    )
    training = scan(data, loader, workers=options.workers, progress=on_scan)
    if eval_data is not None:  # fail now, not after hours of training, on a broken held-out image
        held_out = scan(
            eval_data, ImageLoader(processor.image_processor, loader.min_side, 0), workers=options.workers
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
    plan = BatchPlan(len(training.usable), pairs_per_step, options.seed)
    total = options.steps or max(1, round(options.epochs * plan.steps_per_epoch))
    warmup = options.warmup if options.warmup is not None else round(0.1 * total)
    if warmup < 0 or (warmup >= total and total > 1):
        raise PixseekError(f"warm-up must be between 0 and {total - 1} steps, got {warmup}")

    lock_towers(model, image=options.lock_image, text=options.lock_text)
    model.to(device)
    set_train_mode(model, lock_image=options.lock_image, lock_text=options.lock_text)
    optimizer = _optimizer(model, options)
    scheduler = make_scheduler(optimizer, warmup=warmup, total=total, min_ratio=options.min_lr_ratio)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    identity = _run_identity(options, training, total, warmup)
    tokenizer = processor.tokenizer
    max_tokens = text_token_limit(model, tokenizer, options.max_text_tokens)

    step = 0
    losses: list[float] = []
    evaluations: list[EvalPoint] = []
    skipped = list(training.skipped)
    if resume_from is not None:
        state = ckpt.load_state(resume_from)
        ckpt.compare_run(state["run"], identity)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["cpu"])
        if device.type == "cuda" and state["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(state["rng"]["cuda"], device)
        step, losses = state["step"], list(state["losses"])
        evaluations = [_eval_point(point) for point in state.get("evaluations", [])]
    start_step = step

    # After the resume check: a refused resume should not first pay for these.
    frozen_images = frozen_texts = None
    if options.lock_image:
        frozen_images, broken = frozen.image_features(model, training, loader, precision)
        skipped += broken
        loader.clear()  # the pixels are no longer needed
    if options.lock_text:
        frozen_texts = frozen.text_features(model, tokenizer, training.data.captions, max_tokens, precision)

    def state_dict() -> dict[str, Any]:
        rng = {
            "cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        }
        return {
            "run": identity,
            "step": step,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": rng,
            "losses": losses,
            "evaluations": [asdict(point) for point in evaluations],
        }

    eval_seconds = 0.0  # time spent evaluating, left out of the training speed

    def run_eval() -> None:
        if eval_data is None:
            return
        # evaluation draws no random numbers, but keep the training stream independent of it anyway
        nonlocal eval_seconds
        eval_started = time.perf_counter()
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            point = _evaluate(
                model, processor, device, precision, eval_data, step, options.lock_image, options.lock_text
            )
        evaluations.append(point)
        eval_seconds += time.perf_counter() - eval_started
        if on_eval:
            on_eval(point)

    decode_pool = ThreadPoolExecutor(max_workers=options.workers or os.cpu_count() or 1)

    def make_batch(at: int) -> Batch:
        image_ids, caption_ids = plan.pairs(at, training)
        return collate(
            training,
            image_ids,
            caption_ids,
            loader,
            tokenizer,
            max_tokens,
            frozen_images,
            frozen_texts,
            decode_pool,
        )

    prefetcher = Prefetcher(make_batch)
    started = time.perf_counter()
    pairs_seen = 0
    try:
        if step == 0:
            run_eval()
        while step < total:
            batch = prefetcher.get(step, step + 1 if step + 1 < total else None)
            skipped += batch.skipped
            if len(batch) < 2:  # nothing to contrast: every image of this batch broke since the scan
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                step += 1
                continue
            batch = batch.to(device)
            loss = contrastive_backward(
                model, batch.chunks(options.accumulate), precision=precision, scale_loss=scaler.scale
            )
            if options.max_grad_norm:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(
                    [p for p in model.parameters() if p.requires_grad], options.max_grad_norm
                )
            lr = optimizer.param_groups[0]["lr"]
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            clamp_logit_scale(model.logit_scale)
            step += 1
            pairs_seen += len(batch)
            losses.append(loss)
            if on_step:
                on_step(step, total, loss, lr)
            if step % options.checkpoint_every == 0 and step < total:
                ckpt.save_checkpoint(output, step, model, processor, state_dict(), options.keep_checkpoints)
            if options.eval_every and step % options.eval_every == 0 and step < total:
                run_eval()
    except KeyboardInterrupt:
        optimizer.zero_grad(set_to_none=True)  # a step cut short leaves half its gradient
        saved = ckpt.save_checkpoint(
            output, step, model, processor, state_dict(), max(1, options.keep_checkpoints)
        )
        raise TrainingInterrupted(step, saved) from None
    finally:
        prefetcher.close()
        decode_pool.shutdown(wait=True, cancel_futures=True)
    seconds = time.perf_counter() - started - eval_seconds  # training alone
    if not evaluations or evaluations[-1].step != step:
        run_eval()

    from pixseek.training.model import save_dual_encoder

    save_dual_encoder(model, processor, output)
    report = TrainReport(
        output=str(output),
        steps=step,
        start_step=start_step,
        batch_size=pairs_per_step,
        images=len(training.usable),
        captions=len(training.data.captions),
        trainable_parameters=trainable_parameters(model),
        device=str(device),
        precision=precision,
        seconds=seconds,
        pairs_per_second=pairs_seen / seconds if seconds > 0 else 0.0,
        first_loss=losses[0] if losses else None,
        final_loss=float(np.mean(losses[-10:])) if losses else None,
        skipped=sorted(set(skipped)),
        evaluations=evaluations,
    )
    (output / ckpt.SUMMARY_FILE).write_text(json.dumps({"finished": True, **asdict(report)}, indent=2) + "\n")
    return report
