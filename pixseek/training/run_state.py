"""The state of a training run that changes as it steps, and its round trip through a checkpoint.

A resumed run must end bit-identical to one that never stopped, so everything that changes besides
the weights (optimizer, schedule, grad scaler, step, random state, losses, evaluations) lives in one
object that writes itself into a checkpoint and reads itself back, next to the run's identity: the
options that must match for a resumed run to be the same run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from pixseek.training import checkpoints as ckpt
from pixseek.training.data import TrainingSet
from pixseek.training.held_out import EvalPoint, eval_point
from pixseek.training.options import TrainOptions
from pixseek.training.schedule import make_scheduler


def run_identity(options: TrainOptions, training: TrainingSet, total: int, warmup: int) -> dict[str, Any]:
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


def _optimizer(model: torch.nn.Module, options: TrainOptions) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases, norms and the temperature (CLIP's recipe)."""
    decay: list[torch.nn.Parameter] = []
    plain: list[torch.nn.Parameter] = []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (decay if parameter.ndim >= 2 else plain).append(parameter)
    groups = [{"params": decay, "weight_decay": options.weight_decay}, {"params": plain, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=options.lr, betas=(0.9, 0.98), eps=1e-6)


@dataclass
class RunState:
    """Where a run stands after ``step`` optimizer steps: everything a checkpoint holds but the weights."""

    identity: dict[str, Any]
    device: torch.device
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    step: int = 0
    losses: list[float] = field(default_factory=list)
    evaluations: list[EvalPoint] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        model: torch.nn.Module,
        options: TrainOptions,
        training: TrainingSet,
        *,
        total: int,
        warmup: int,
        device: torch.device,
        precision: str,
    ) -> RunState:
        """Step 0 of a run of ``total`` steps, for ``model`` already on ``device``."""
        optimizer = _optimizer(model, options)
        scheduler = make_scheduler(optimizer, warmup=warmup, total=total, min_ratio=options.min_lr_ratio)
        scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        identity = run_identity(options, training, total, warmup)
        return cls(identity, device, optimizer, scheduler, scaler)

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint stores besides the weights."""
        rng = {
            "cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
        }
        return {
            "run": self.identity,
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng,
            "losses": self.losses,
            "evaluations": [asdict(point) for point in self.evaluations],
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint's ``state_dict``; refused when its run is not this one."""
        ckpt.compare_run(state["run"], self.identity)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["cpu"])
        if self.device.type == "cuda" and state["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        self.step, self.losses = state["step"], list(state["losses"])
        self.evaluations = [eval_point(point) for point in state.get("evaluations", [])]
