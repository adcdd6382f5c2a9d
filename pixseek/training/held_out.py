"""Recall on the held-out captions during a training run, and the record of each evaluation.

An evaluation switches the model to eval mode and back, must not disturb the training's random
stream, and is left out of the training speed; keeping that here lets the step loop call one
method at its evaluation points. The points are checkpointed with the run, so they also come back
from a checkpoint.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from pixseek.embedding.encoder import DualEncoder
from pixseek.evaluation.dataset import CaptionSet
from pixseek.evaluation.metrics import RetrievalMetrics
from pixseek.evaluation.runner import evaluate
from pixseek.training.model import set_train_mode


@dataclass
class EvalPoint:
    step: int
    text_to_image: RetrievalMetrics
    image_to_text: RetrievalMetrics | None
    per_language: dict[str, dict[str, RetrievalMetrics]]


def eval_point(saved: dict[str, Any]) -> EvalPoint:
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


@dataclass
class HeldOutEvaluator:
    """Evaluates the model being trained on ``data`` (nothing when there is none), adds up the time
    it takes, and hands each point to ``on_eval``."""

    model: Any
    processor: Any
    device: torch.device
    precision: str
    data: CaptionSet | None
    lock_image: bool
    lock_text: bool
    on_eval: Callable[[EvalPoint], None] | None = None
    seconds: float = 0.0  # time spent evaluating, left out of the training speed

    def run(self, step: int, evaluations: list[EvalPoint]) -> None:
        """Evaluate at ``step`` and append the point to ``evaluations``."""
        if self.data is None:
            return
        started = time.perf_counter()
        # evaluation draws no random numbers, but keep the training stream independent of it anyway
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            point = self._evaluate(self.data, step)
        evaluations.append(point)
        self.seconds += time.perf_counter() - started
        if self.on_eval:
            self.on_eval(point)

    def _evaluate(self, data: CaptionSet, step: int) -> EvalPoint:
        # DualEncoder switches the model to eval mode; training mode (with its locks) comes back after.
        encoder = DualEncoder(self.model, self.processor, "training", self.device, self.precision)
        try:
            report = evaluate(encoder, data, batch_size=64)
        finally:
            set_train_mode(self.model, lock_image=self.lock_image, lock_text=self.lock_text)
        return EvalPoint(step, report.text_to_image["first"], report.image_to_text, report.per_language)
