"""Options that several commands share, defined once: the model, the device, the indexing pipeline,
the vector index, the re-rankers. Every option names its value (``metavar``) the way a user would
write it, never by its Python type."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from pixseek.cli.common import option_group
from pixseek.config import DEFAULT_MODEL
from pixseek.vocabulary import (
    ENCODER_PRESETS,
    RERANKER_PRESETS,
    ImageRuntime,
    IndexKind,
    Precision,
    RerankChoice,
)

_PRESETS_HELP = ", ".join(f"{name} = {hub}" for name, hub in ENCODER_PRESETS.items())

ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        metavar="MODEL",
        help="Preset, hub id or local checkpoint dir [env PIXSEEK_MODEL; default: the model the collection "
        f"was built with, or {DEFAULT_MODEL} for a new one]. Presets: {_PRESETS_HELP}",
    ),
]
SearchModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        metavar="MODEL",
        help="Model for the query [default: the one the collection was built with; must match it]",
    ),
]
DeviceOption = Annotated[
    str | None,
    typer.Option(
        metavar="DEVICE", help="auto (CUDA when present), cpu, cuda, cuda:1 ... [env PIXSEEK_DEVICE]"
    ),
]
PrecisionOption = Annotated[
    Precision | None,
    typer.Option(
        metavar="PRECISION",
        help="auto = fp16 on CUDA, bf16 on CPUs with native bf16, else fp32; or fp32, bf16, fp16 "
        "[env PIXSEEK_PRECISION]",
    ),
]
ImageRuntimeOption = Annotated[
    ImageRuntime | None,
    typer.Option(
        metavar="RUNTIME",
        help="What runs the image tower: auto = OpenVINO on a CPU (compiled once per model into the "
        "cache dir, then no torch import when indexing; the tower 1.7x (bf16) to 2.5x (fp32) PyTorch's "
        "speed on an AVX-512 CPU, about equal on AVX2 only), else "
        "PyTorch; or torch, openvino [env PIXSEEK_IMAGE_RUNTIME]",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary")]

# The vector index: how it is chosen and tuned (pixseek.store.ann).
IndexTypeOption = Annotated[
    IndexKind | None,
    typer.Option(
        "--index-type",
        metavar="TYPE",
        help="Vector index: auto (exact Flat up to 100k vectors, then IVF; when raw vectors exceed "
        "--memory-budget IVF-SQ8, or IVF-PQ with exact re-ranking), flat, ivf, ivfsq, ivfpq or hnsw "
        "[env PIXSEEK_INDEX_TYPE]",
    ),
]
MemoryBudgetOption = Annotated[
    str | None,
    typer.Option(
        metavar="SIZE",
        help="Memory the vector index may use, e.g. 8G [env PIXSEEK_MEMORY_BUDGET; default: half the "
        "available RAM]",
    ),
]
RecallTargetOption = Annotated[
    float | None,
    typer.Option(
        min=0.01,
        max=1.0,
        metavar="RECALL",
        help="recall@10 the index's search parameters are tuned to [default: 0.95]",
    ),
]

# Re-ranker checkpoints.
BridgeTowerModelOption = Annotated[
    str | None,
    typer.Option(
        metavar="MODEL",
        help="BridgeTower ITM checkpoint: preset, hub id or local dir "
        f"[env PIXSEEK_BRIDGETOWER_MODEL; default: bridgetower = {RERANKER_PRESETS['bridgetower']}]",
    ),
]
Blip2ModelOption = Annotated[
    str | None,
    typer.Option(
        "--blip2-model",
        metavar="MODEL",
        help="BLIP-2 ITM checkpoint: preset, hub id or local dir [env PIXSEEK_BLIP2_MODEL; default: "
        f"blip2 = {RERANKER_PRESETS['blip2']}; blip2-coco = {RERANKER_PRESETS['blip2-coco']}]",
    ),
]

# Shared by index and watch: which files count, and how the indexing pipeline runs.
BatchSizeOption = Annotated[
    int | None, typer.Option(metavar="N", help="Images per model call [env PIXSEEK_BATCH_SIZE; default: 32]")
]
WorkersOption = Annotated[
    int | None,
    typer.Option(metavar="N", help="Decoding threads [env PIXSEEK_DECODE_WORKERS; default: CPU count]"),
]
IncludeOption = Annotated[
    list[str] | None, typer.Option(metavar="GLOB", help="Only files matching this glob (repeatable)")
]
ExcludeOption = Annotated[
    list[str] | None,
    typer.Option(metavar="GLOB", help="Skip files and folders matching this glob (repeatable)"),
]
HiddenOption = Annotated[bool, typer.Option(help="Also index hidden files and folders")]
RerankOption = Annotated[
    RerankChoice | None,
    typer.Option(
        metavar="RERANKER",
        help="Re-rank the candidates of a text query with image-text matching: bridgetower, blip2, "
        "both (mean of their match probabilities) or none [env PIXSEEK_RERANK; default: none]",
    ),
]


@dataclass(frozen=True)
class PipelineOptions:
    """How ``index`` and ``watch`` run the indexing pipeline and which files they take."""

    model: str | None = None
    device: str | None = None
    precision: Precision | None = None
    image_runtime: ImageRuntime | None = None
    batch_size: int | None = None
    workers: int | None = None
    include: list[str] | None = None
    exclude: list[str] | None = None
    hidden: bool = False

    def settings_overrides(self) -> dict[str, object]:
        return {
            "model": self.model,
            "device": self.device,
            "precision": self.precision,
            "image_runtime": self.image_runtime,
            "batch_size": self.batch_size,
            "decode_workers": self.workers,
        }


pipeline_options = option_group(
    "pipeline",
    {
        "model": (ModelOption, None),
        "device": (DeviceOption, None),
        "precision": (PrecisionOption, None),
        "image_runtime": (ImageRuntimeOption, None),
        "batch_size": (BatchSizeOption, None),
        "workers": (WorkersOption, None),
        "include": (IncludeOption, None),
        "exclude": (ExcludeOption, None),
        "hidden": (HiddenOption, False),
    },
    PipelineOptions,
)

PathsArgument = Annotated[
    list[Path], typer.Argument(metavar="PATH", help="Folders or files (recursively)", show_default=False)
]


@dataclass(frozen=True)
class RayOptions:
    """``index --ray``: where the Ray actors run and how many."""

    ray: bool = False
    ray_address: str | None = None
    ray_actors: int | None = None

    @property
    def enabled(self) -> bool:
        return self.ray or self.ray_address is not None


ray_options = option_group(
    "distributed",
    {
        "ray": (
            Annotated[
                bool,
                typer.Option(
                    "--ray",
                    help="Read, decode and embed on Ray actors (needs pip install 'pixseek[ray]'): a local "
                    "Ray on this machine, or the cluster of --ray-address (or $RAY_ADDRESS), one actor per "
                    "GPU. Same incremental rules and store writes as without it. On a cluster, files must "
                    "be at the same paths on every node and the database reachable from every node "
                    "(docs/distributed.md)",
                ),
            ],
            False,
        ),
        "ray_address": (
            Annotated[
                str | None,
                typer.Option(
                    metavar="ADDRESS",
                    help="Ray cluster to index on (implies --ray): auto, HOST:6379 or ray://HOST:10001",
                ),
            ],
            None,
        ),
        "ray_actors": (
            Annotated[
                int | None,
                typer.Option(
                    min=1,
                    metavar="N",
                    help="Embedding actors for --ray [default: one per GPU, else one per 4 CPUs of the "
                    "cluster]",
                ),
            ],
            None,
        ),
    },
    RayOptions,
)


def _overrides(**values: object) -> dict[str, object]:
    """Options that are settings, as given (None: not given, the setting or its default holds)."""
    return values


# The vector index's choice and tuning (index, reindex): settings overrides.
index_options = option_group(
    "index_settings",
    {
        "index_type": (IndexTypeOption, None),
        "memory_budget": (MemoryBudgetOption, None),
        "recall_target": (RecallTargetOption, None),
    },
    _overrides,
)
# The re-rankers' checkpoints (index --rerank-cache, search, serve, eval): settings overrides.
reranker_model_options = option_group(
    "reranker_models",
    {"bridgetower_model": (BridgeTowerModelOption, None), "blip2_model": (Blip2ModelOption, None)},
    _overrides,
)
