"""``pixseek eval`` (retrieval quality on a caption set) and ``pixseek train`` (fine-tuning)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from pixseek.cli.common import (
    err,
    global_options,
    option_group,
    out,
    print_reasons,
    quiet_model_loading,
    settings,
    user_errors,
)
from pixseek.cli.options import (
    BatchSizeOption,
    DeviceOption,
    JsonOption,
    ModelOption,
    PrecisionOption,
    QuietOption,
    WorkersOption,
    reranker_model_options,
)
from pixseek.errors import PixseekError
from pixseek.vocabulary import Precision, RerankChoice

if TYPE_CHECKING:
    from pixseek.evaluation.runner import EvalReport
    from pixseek.training.loop import TrainReport
    from pixseek.training.options import TrainOptions

app = typer.Typer()

CaptionsArgument = Annotated[
    Path,
    typer.Argument(
        metavar="CAPTIONS",
        help="Captions file: JSONL or CSV with image, caption[, language]",
        show_default=False,
    ),
]
ImagesOption = Annotated[
    Path, typer.Option("--images", metavar="FOLDER", help="Folder the image paths are relative to")
]


@app.command("eval")
@global_options
@reranker_model_options
def evaluate_command(
    ctx: typer.Context,
    reranker_models: dict[str, object],
    captions: CaptionsArgument,
    images: ImagesOption,
    model: ModelOption = None,
    device: DeviceOption = None,
    precision: PrecisionOption = None,
    batch_size: BatchSizeOption = None,
    rerank: Annotated[
        RerankChoice,
        typer.Option(
            metavar="RERANKER",
            help="Also evaluate text->image re-ranked by: none, bridgetower, blip2 or both",
        ),
    ] = RerankChoice.NONE,
    rerank_k: Annotated[
        int, typer.Option(metavar="N", help="First-stage candidates to re-rank per caption", min=1)
    ] = 16,
    compare: Annotated[
        str | None,
        typer.Option(
            metavar="A,B",
            help="Evaluate the models of these collections on the same captions, side by side "
            "(e.g. the active one and one built beside it with `pixseek collections create`)",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Measure retrieval quality on an image-caption set: text->image and image->text recall@1/5/10
    and mean rank, per language when given, first stage and re-ranked, with time per query."""
    from pixseek.evaluation.dataset import load_caption_set
    from pixseek.evaluation.runner import evaluate
    from pixseek.library import Library

    if compare is not None:
        from pixseek.service.evaluation import compare_collections

        names = [name.strip() for name in compare.split(",") if name.strip()]
        with user_errors():
            if model is not None:
                raise PixseekError("--compare uses each collection's own model: leave out --model")
            data = load_caption_set(captions, images)
            quiet_model_loading()
            chosen = settings(ctx, device=device, precision=precision, batch_size=batch_size)
            reports = compare_collections(chosen, names, data)
        if as_json:
            out.print_json(json.dumps({name: asdict(report) for name, report in reports.items()}))
            return
        for name, report in reports.items():
            out.print(f"{name}: {report.images} images, {report.captions} captions")
            out.print(_metrics_table(report))
        return

    overrides = {
        "model": model,
        "device": device,
        "precision": precision,
        "batch_size": batch_size,
        **reranker_models,
    }
    with user_errors(), Library(settings(ctx, **overrides)) as library:
        data = load_caption_set(captions, images)
        quiet_model_loading()
        encoder = library.load_encoder()
        scorers = {kind: library.scorer(kind) for kind in library.rerank_kinds(rerank)}
        report = evaluate(
            encoder, data, batch_size=library.settings.batch_size, scorers=scorers, rerank_k=rerank_k
        )
    if as_json:
        out.print_json(json.dumps(asdict(report)))
        return
    out.print(f"{report.images} images, {report.captions} captions, model {encoder.model_id}")
    out.print(_metrics_table(report))


def _metrics_table(report: EvalReport) -> Table:
    table = Table("direction", "stage", "R@1", "R@5", "R@10", "mean rank", "ms/query", box=None)
    rows = [("text->image", stage, m) for stage, m in report.text_to_image.items()]
    if report.image_to_text is not None:
        rows.append(("image->text", "first", report.image_to_text))
    rows += [
        (f"{direction.replace('_to_', '->')} [{language}]", "first", metrics)
        for language, by_direction in report.per_language.items()
        for direction, metrics in by_direction.items()
    ]
    for direction, stage, m in rows:
        timing = report.ms_per_query.get(stage) if direction == "text->image" else None
        table.add_row(
            direction,
            stage,
            *(f"{m.recall[k]:.3f}" for k in (1, 5, 10)),
            f"{m.mean_rank:.1f}",
            f"{timing:.1f}" if timing is not None else "",
        )
    return table


def _option(help_text: str, metavar: str | None = None, flag: str | None = None, **kwargs: Any) -> Any:
    names = (flag,) if flag else ()
    return typer.Option(*names, help=help_text, metavar=metavar, **kwargs)


# Every TrainOptions field a user sets, once: its option and default. The command receives the
# TrainOptions built from them (device and precision come from the settings, like everywhere).
TRAIN_OPTIONS: dict[str, tuple[Any, Any]] = {
    "output": (
        Annotated[
            Path,
            typer.Option(
                "--output",
                "-o",
                metavar="DIR",
                help="Folder for checkpoints and the final model (use it as index --model DIR)",
            ),
        ],
        ...,
    ),
    "vision": (
        Annotated[
            str | None, _option("Vision tower to start from: hub id or local dir (e.g. a ViT)", "MODEL")
        ],
        None,
    ),
    "text": (
        Annotated[
            str | None, _option("Text tower to start from: hub id or local dir (e.g. BERT, XLM-R)", "MODEL")
        ],
        None,
    ),
    "from_model": (
        Annotated[
            str | None,
            _option("Continue a saved VisionTextDualEncoder instead of --vision/--text", "DIR", "--from"),
        ],
        None,
    ),
    "projection_dim": (
        Annotated[int, _option("Size of the shared embedding space for a new dual encoder", "N", min=1)],
        512,
    ),
    "steps": (
        Annotated[int | None, _option("Optimizer steps [default: --epochs worth of steps]", "N", min=1)],
        None,
    ),
    "epochs": (Annotated[float, _option("Passes over the images when --steps is not given", "N")], 1.0),
    "batch_size": (Annotated[int, _option("Image-caption pairs per micro-batch", "N", min=1)], 32),
    "accumulate": (
        Annotated[
            int,
            _option(
                "Micro-batches per optimizer step; the contrastive loss spans all of them (gradient "
                "caching), so the effective batch is batch-size x accumulate",
                "N",
                min=1,
            ),
        ],
        1,
    ),
    "lr": (Annotated[float, _option("Peak learning rate (AdamW)", "RATE", "--lr")], 1e-4),
    "warmup": (
        Annotated[
            int | None, _option("Linear warm-up steps, then cosine decay [default: 10% of steps]", "N", min=0)
        ],
        None,
    ),
    "min_lr_ratio": (
        Annotated[
            float, _option("Learning rate at the end, as a fraction of --lr", "RATIO", min=0.0, max=1.0)
        ],
        0.0,
    ),
    "weight_decay": (
        Annotated[float, _option("AdamW weight decay (not on biases, norms, temperature)", "DECAY", min=0.0)],
        0.1,
    ),
    "max_grad_norm": (
        Annotated[float, _option("Clip the gradient norm to this; 0 turns clipping off", "NORM", min=0.0)],
        1.0,
    ),
    "lock_image": (
        Annotated[
            bool, _option("LiT: freeze the image tower (its projection still trains)", flag="--lock-image")
        ],
        False,
    ),
    "lock_text": (
        Annotated[bool, _option("Freeze the text tower (its projection still trains)", flag="--lock-text")],
        False,
    ),
    "seed": (Annotated[int, _option("Seed for the batch order, dropout and new projections", "N")], 0),
    "checkpoint_every": (
        Annotated[int, _option("Save a resumable checkpoint every N steps", "N", min=1)],
        500,
    ),
    "keep_checkpoints": (Annotated[int, _option("Keep the last N checkpoints", "N", min=1)], 2),
    "max_text_tokens": (Annotated[int, _option("Truncate captions to this many tokens", "N", min=2)], 64),
    "eval_every": (
        Annotated[int, _option("Evaluate every N steps (0: only before and after)", "N", min=0)],
        0,
    ),
    "cache_mb": (
        Annotated[
            int, _option("Memory for pre-processed training images (decoded once, reused)", "MB", min=0)
        ],
        2048,
    ),
    "workers": (WorkersOption, None),
    "resume": (
        Annotated[
            bool, _option("Continue from the last checkpoint in --output (same options)", flag="--resume")
        ],
        False,
    ),
}


def _train_options(**values: Any) -> dict[str, Any]:
    """The TrainOptions fields as given (TrainOptions itself is built once the settings are known)."""
    values["max_grad_norm"] = values["max_grad_norm"] or None
    return values


@app.command("train")
@global_options
@option_group("fields", TRAIN_OPTIONS, _train_options)
def train_command(
    ctx: typer.Context,
    captions: Annotated[
        Path,
        typer.Argument(
            metavar="CAPTIONS",
            help="Training captions: JSONL or CSV with image, caption[, language], as for eval",
            show_default=False,
        ),
    ],
    images: ImagesOption,
    fields: dict[str, Any],
    device: DeviceOption = None,
    precision: Annotated[
        Precision | None,
        typer.Option(
            metavar="PRECISION",
            help="auto = bf16 autocast on GPUs that have it, else fp16 autocast with a grad scaler on "
            "CUDA; bf16 autocast on CPUs with native bf16 (AVX512-BF16/AMX), else fp32; or fp32|bf16|fp16",
        ),
    ] = None,
    eval_captions: Annotated[
        Path | None,
        typer.Option(
            metavar="CAPTIONS",
            help="Held-out captions file: recall@k before training, every --eval-every steps and after",
        ),
    ] = None,
    eval_images: Annotated[
        Path | None, typer.Option(metavar="FOLDER", help="Folder of the held-out images [default: --images]")
    ] = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Fine-tune a VisionTextDualEncoder contrastively (CLIP loss) on an image-caption set: build it
    from a vision and a text tower or continue a saved one; Ctrl-C saves a checkpoint to --resume."""
    from pixseek.evaluation.dataset import load_caption_set
    from pixseek.training.loop import TrainingInterrupted, train
    from pixseek.training.options import TrainOptions

    show = not (quiet or as_json)
    with user_errors():
        quiet_model_loading()
        resolved = settings(ctx, device=device, precision=precision)
        options = TrainOptions(**fields, device=resolved.device, precision=resolved.precision)
        data = load_caption_set(captions, images)
        eval_data = load_caption_set(eval_captions, eval_images or images) if eval_captions else None
        try:
            report = _train_with_progress(train, options, data, eval_data, show)
        except TrainingInterrupted as interrupted:
            err.print(f"{interrupted}; continue with the same command plus --resume")
            raise typer.Exit(130) from None
        except KeyboardInterrupt:  # while loading or decoding, before the first step
            err.print("interrupted before training started; nothing to resume")
            raise typer.Exit(130) from None
    if as_json:
        out.print_json(json.dumps(asdict(report)))
    elif not quiet:
        _print_training(report)


def _train_with_progress(
    train: Any, options: TrainOptions, data: Any, eval_data: Any, show: bool
) -> TrainReport:
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
        console=err,
        disable=not show,
        transient=True,  # the summary follows; a finished bar left above it says nothing more
    )
    scanning = progress.add_task("decoding images", total=None, info="", visible=False)
    training = progress.add_task("training", total=None, info="", visible=False)

    def on_step(step: int, total: int, loss: float, rate: float) -> None:
        info = f"loss {loss:.4f}  lr {rate:.2e}"
        progress.update(training, completed=step, total=total, visible=True, info=info)

    def on_eval(point: Any) -> None:
        recall = point.text_to_image.recall
        err.print(
            f"step {point.step}: held-out text->image R@1 {recall[1]:.3f}  R@5 {recall[5]:.3f}  "
            f"R@10 {recall[10]:.3f}"
        )

    with progress:
        return train(
            options,
            data,
            eval_data=eval_data,
            on_scan=lambda done, total: progress.update(scanning, completed=done, total=total, visible=True),
            on_step=on_step,
            on_eval=on_eval if show else None,
        )


def _print_training(report: TrainReport) -> None:
    losses = ""
    if report.final_loss is not None:
        losses = f"loss {report.first_loss:.4f} -> {report.final_loss:.4f}; "
    err.print(
        f"trained steps {report.start_step}..{report.steps} ({report.batch_size} pairs each, {report.images} "
        f"images) in {report.seconds:.1f}s, {report.pairs_per_second:.1f} pairs/s [{report.device}, "
        f"{report.precision}]; {losses}{len(report.skipped)} images skipped"
    )
    print_reasons(err, "skipped", report.skipped)
    err.print(f"saved {report.output}; use it with: pixseek index --model {report.output} ...")
