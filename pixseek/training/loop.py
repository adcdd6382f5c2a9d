"""The training run: prepare, restore a checkpoint, step, checkpoint, evaluate, save, report.

Everything a run depends on (data order, dropout, schedule) is a function of its options and the
step, and a checkpoint holds all the state that changes, so an interrupted run that is resumed ends
with the same weights as one that never stopped.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from pixseek.errors import PixseekError
from pixseek.evaluation.dataset import CaptionSet
from pixseek.training import checkpoints as ckpt
from pixseek.training import frozen
from pixseek.training.data import Batch, Prefetcher, Progress, collate
from pixseek.training.held_out import EvalPoint, HeldOutEvaluator
from pixseek.training.loss import clamp_logit_scale
from pixseek.training.model import save_dual_encoder, trainable_parameters
from pixseek.training.options import TrainOptions
from pixseek.training.preparation import PreparedRun, prepare_run
from pixseek.training.run_state import RunState
from pixseek.training.step import contrastive_backward


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
FrozenImages = dict[int, torch.Tensor]


def train(
    options: TrainOptions,
    data: CaptionSet,
    *,
    eval_data: CaptionSet | None = None,
    on_scan: Progress | None = None,
    on_step: StepCallback | None = None,
    on_eval: Callable[[EvalPoint], None] | None = None,
) -> TrainReport:
    """Train as ``options`` say on ``data`` (evaluating on ``eval_data`` before, after and every
    ``eval_every`` steps), save the model in ``options.output`` and return the report also written
    there; Ctrl-C checkpoints the run and raises TrainingInterrupted."""
    run = prepare_run(options, data, eval_data, on_scan)
    state = RunState.start(
        run.model,
        options,
        run.training,
        total=run.total,
        warmup=run.warmup,
        device=run.device,
        precision=run.precision,
    )
    if run.resume_from is not None:
        state.restore(ckpt.load_state(run.resume_from))
    start_step = state.step

    # After the resume check: a refused resume should not first pay for these.
    frozen_images, frozen_texts, skipped = _frozen_features(options, run)
    evaluator = HeldOutEvaluator(
        run.model,
        run.processor,
        run.device,
        run.precision,
        eval_data,
        lock_image=options.lock_image,
        lock_text=options.lock_text,
        on_eval=on_eval,
    )
    with _batches(options, run, frozen_images, frozen_texts) as batches:
        started = time.perf_counter()
        pairs_seen, skipped_in_batches = _run_steps(options, run, state, batches, evaluator, on_step)
    seconds = time.perf_counter() - started - evaluator.seconds  # training alone
    if not state.evaluations or state.evaluations[-1].step != state.step:
        evaluator.run(state.step, state.evaluations)

    save_dual_encoder(run.model, run.processor, run.output)
    report = TrainReport(
        output=str(run.output),
        steps=state.step,
        start_step=start_step,
        batch_size=run.plan.batch_size,
        images=len(run.training.usable),
        captions=len(run.training.data.captions),
        trainable_parameters=trainable_parameters(run.model),
        device=str(run.device),
        precision=run.precision,
        seconds=seconds,
        pairs_per_second=pairs_seen / seconds if seconds > 0 else 0.0,
        first_loss=state.losses[0] if state.losses else None,
        final_loss=float(np.mean(state.losses[-10:])) if state.losses else None,
        skipped=sorted(set(run.training.skipped + skipped + skipped_in_batches)),
        evaluations=state.evaluations,
    )
    summary = json.dumps({"finished": True, **asdict(report)}, indent=2)
    (run.output / ckpt.SUMMARY_FILE).write_text(summary + "\n")
    return report


def _frozen_features(
    options: TrainOptions, run: PreparedRun
) -> tuple[FrozenImages | None, torch.Tensor | None, list[tuple[str, str]]]:
    """The locked towers' outputs, computed once for the whole run (see ``frozen``), and the
    training images that no longer decode."""
    frozen_images: FrozenImages | None = None
    frozen_texts: torch.Tensor | None = None
    broken: list[tuple[str, str]] = []
    if options.lock_image:
        frozen_images, broken = frozen.image_features(run.model, run.training, run.loader, run.precision)
        run.loader.clear()  # the pixels are no longer needed
    if options.lock_text:
        captions = run.training.data.captions
        frozen_texts = frozen.text_features(
            run.model, run.processor.tokenizer, captions, run.max_tokens, run.precision
        )
    return frozen_images, frozen_texts, broken


@contextmanager
def _batches(
    options: TrainOptions,
    run: PreparedRun,
    frozen_images: FrozenImages | None,
    frozen_texts: torch.Tensor | None,
) -> Iterator[Prefetcher]:
    """Each step's batch, built one step ahead in the background, its images decoded in a pool."""
    decode_pool = ThreadPoolExecutor(max_workers=options.workers or os.cpu_count() or 1)

    def make_batch(at: int) -> Batch:
        image_ids, caption_ids = run.plan.pairs(at, run.training)
        return collate(
            run.training,
            image_ids,
            caption_ids,
            run.loader,
            run.processor.tokenizer,
            run.max_tokens,
            frozen_images,
            frozen_texts,
            decode_pool,
        )

    prefetcher = Prefetcher(make_batch)
    try:
        yield prefetcher
    finally:
        prefetcher.close()
        decode_pool.shutdown(wait=True, cancel_futures=True)


def _run_steps(
    options: TrainOptions,
    run: PreparedRun,
    state: RunState,
    batches: Prefetcher,
    evaluator: HeldOutEvaluator,
    on_step: StepCallback | None,
) -> tuple[int, list[tuple[str, str]]]:
    """Step from ``state.step`` to the end of the run, checkpointing and evaluating on the way;
    return the pairs trained on and the images that broke since the scan. Ctrl-C checkpoints
    where the run stands and raises TrainingInterrupted."""
    pairs_seen = 0
    skipped: list[tuple[str, str]] = []
    try:
        if state.step == 0:
            evaluator.run(state.step, state.evaluations)
        while state.step < run.total:
            batch = batches.get(state.step, state.step + 1 if state.step + 1 < run.total else None)
            skipped += batch.skipped
            if len(batch) < 2:  # nothing to contrast: every image of this batch broke since the scan
                state.optimizer.zero_grad(set_to_none=True)
                state.scheduler.step()
                state.step += 1
                continue
            loss, lr = _optimizer_step(options, run, state, batch)
            state.step += 1
            pairs_seen += len(batch)
            state.losses.append(loss)
            if on_step:
                on_step(state.step, run.total, loss, lr)
            if state.step % options.checkpoint_every == 0 and state.step < run.total:
                ckpt.save_checkpoint(
                    run.output,
                    state.step,
                    run.model,
                    run.processor,
                    state.state_dict(),
                    options.keep_checkpoints,
                )
            if options.eval_every and state.step % options.eval_every == 0 and state.step < run.total:
                evaluator.run(state.step, state.evaluations)
    except KeyboardInterrupt:
        state.optimizer.zero_grad(set_to_none=True)  # a step cut short leaves half its gradient
        saved = ckpt.save_checkpoint(
            run.output,
            state.step,
            run.model,
            run.processor,
            state.state_dict(),
            max(1, options.keep_checkpoints),
        )
        raise TrainingInterrupted(state.step, saved) from None
    return pairs_seen, skipped


def _optimizer_step(
    options: TrainOptions, run: PreparedRun, state: RunState, batch: Batch
) -> tuple[float, float]:
    """One optimizer step on ``batch``: (its loss, the learning rate it stepped with)."""
    batch = batch.to(run.device)
    loss = contrastive_backward(
        run.model, batch.chunks(options.accumulate), precision=run.precision, scale_loss=state.scaler.scale
    )
    if options.max_grad_norm:
        state.scaler.unscale_(state.optimizer)
        torch.nn.utils.clip_grad_norm_(
            [p for p in run.model.parameters() if p.requires_grad], options.max_grad_norm
        )
    lr = state.optimizer.param_groups[0]["lr"]
    state.scaler.step(state.optimizer)
    state.scaler.update()
    state.optimizer.zero_grad(set_to_none=True)
    state.scheduler.step()
    clamp_logit_scale(run.model.logit_scale)
    return loss, lr
