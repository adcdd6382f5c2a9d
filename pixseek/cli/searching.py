"""``pixseek search``: by text, by an image file or by an indexed image, optionally re-ranked."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from pixseek.cli.common import (
    err,
    global_options,
    option_group,
    out,
    quiet_model_loading,
    settings,
    user_errors,
)
from pixseek.cli.options import (
    DeviceOption,
    JsonOption,
    PrecisionOption,
    RerankOption,
    SearchModelOption,
    reranker_model_options,
)

if TYPE_CHECKING:
    from pixseek.library import SearchFilters, SearchOutcome

app = typer.Typer()


def _filters(
    folder: list[Path] | None,
    after: datetime | None,
    before: datetime | None,
    min_width: int | None,
    min_height: int | None,
    image_format: list[str] | None,
) -> SearchFilters:
    from pixseek.library import SearchFilters

    return SearchFilters(
        folders=tuple(os.path.abspath(f) for f in folder or ()),
        taken_after=after,
        taken_before=before,
        min_width=min_width,
        min_height=min_height,
        formats=tuple(image_format or ()),
    )


# Applied inside the vector search: a filtered search returns k results whenever k images match.
filter_options = option_group(
    "filters",
    {
        "folder": (
            Annotated[
                list[Path] | None,
                typer.Option(metavar="FOLDER", help="Only images under this folder (repeatable)"),
            ],
            None,
        ),
        "after": (
            Annotated[
                datetime | None,
                typer.Option(metavar="DATE", help="Taken on or after (EXIF date), e.g. 2021-06-01"),
            ],
            None,
        ),
        "before": (
            Annotated[datetime | None, typer.Option(metavar="DATE", help="Taken on or before (EXIF date)")],
            None,
        ),
        "min_width": (
            Annotated[int | None, typer.Option(metavar="PIXELS", help="Minimum width in pixels")],
            None,
        ),
        "min_height": (
            Annotated[int | None, typer.Option(metavar="PIXELS", help="Minimum height in pixels")],
            None,
        ),
        "image_format": (
            Annotated[
                list[str] | None,
                typer.Option(
                    "--format", metavar="FORMAT", help="Only this format: JPEG, PNG, ... (repeatable)"
                ),
            ],
            None,
        ),
    },
    _filters,
)


@app.command()
@global_options
@filter_options
@reranker_model_options
def search(
    ctx: typer.Context,
    filters: SearchFilters,
    reranker_models: dict[str, object],
    query: Annotated[
        str | None,
        typer.Argument(metavar="QUERY", help="Text to search for, in any language the model knows"),
    ] = None,
    image: Annotated[
        Path | None, typer.Option("--image", "-i", metavar="FILE", help="Search by this image file instead")
    ] = None,
    like: Annotated[
        str | None,
        typer.Option(metavar="ID_OR_PATH", help="Images similar to an indexed image, excluding itself"),
    ] = None,
    k: Annotated[int, typer.Option("-k", metavar="N", help="Number of results", min=1, max=10_000)] = 10,
    model: SearchModelOption = None,
    device: DeviceOption = None,
    precision: PrecisionOption = None,
    rerank: RerankOption = None,
    rerank_k: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Candidates the re-rankers score (at least -k) [default: 50 on CPU, 128 on CUDA]",
            min=1,
            max=10_000,
        ),
    ] = None,
    min_score: Annotated[
        float | None,
        typer.Option(
            metavar="P", help="With --rerank: drop results whose match probability is below P", min=0, max=1
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Search the collection by text, by an image file (--image) or by an indexed image (--like).
    Text queries can be re-ranked (--rerank): slower, but ordered by a model that reads the query
    and each image together, with a match probability that --min-score can cut on. --image and
    --like searches are not re-ranked: the re-rankers score text-image pairs."""
    from pixseek.library import Library

    with user_errors():
        overrides = {
            "device": device,
            "precision": precision,
            "rerank": rerank,
            "rerank_k": rerank_k,
            **reranker_models,
        }
        if query is None and rerank not in (None, "none"):
            err.print("note: --rerank applies to text queries; not re-ranking this one")
        quiet_model_loading()
        with Library(settings(ctx, **overrides)) as library:
            outcome = library.search(
                query, image=image, like=like, k=k, filters=filters, min_score=min_score, model=model
            )
    _report_rerank(outcome, min_score)
    if as_json:
        out.print_json(json.dumps([asdict(hit) for hit in outcome.hits], default=str))
    elif not outcome.hits:
        err.print("no results")
    else:
        out.print(_table(outcome))


def _table(outcome: SearchOutcome) -> Table:
    kinds = outcome.rerankers
    score_columns = ["match", *kinds, "cosine"] if kinds else ["cosine"]
    table = Table("#", *score_columns, "id", box=None)
    table.add_column("path", overflow="fold")  # the path is the answer: fold it, never cut it
    table.add_column("pixels")  # width x height; --json's "size" is the file's bytes
    table.add_column("taken")
    for rank, hit in enumerate(outcome.hits, 1):
        pixels = f"{hit.width}x{hit.height}" if hit.width else ""
        taken = hit.taken_at.strftime("%Y-%m-%d") if hit.taken_at else ""
        scores = [f"{hit.score:.4f}"]
        if kinds:
            itm = [hit.final_score, *((hit.rerank_scores or {}).get(kind) for kind in kinds)]
            scores = [("-" if value is None else f"{value:.4f}") for value in itm] + scores
        table.add_row(str(rank), *scores, str(hit.id), hit.path, pixels, taken)
    return table


def _report_rerank(outcome: SearchOutcome, min_score: float | None) -> None:
    """On stderr, whatever re-ranking could not score or dropped, so that nothing vanishes silently."""
    result = outcome.reranked
    if result is None:
        return
    if result.unscored:
        err.print(
            f"warning: {len(result.unscored)} of {result.candidates} candidates could not be re-ranked:"
        )
        for hit in result.unscored:
            err.print(f"  {hit.path}: {hit.rerank_error}")
    if min_score is not None and result.below_min_score:
        err.print(f"{result.below_min_score} of {result.candidates} candidates below --min-score {min_score}")
