"""``pixseek search``: by text, by an image file or region, by an indexed image, or by a weighted sum
of them; optionally cut, sorted and re-ranked. The rules are the search service's
(:mod:`pixseek.service.searching`); this module parses the options and prints the outcome."""

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
from pixseek.vocabulary import Cutoff, SearchMode, SortOrder

if TYPE_CHECKING:
    from pixseek.library import SearchFilters, SearchOutcome
    from pixseek.search.query import Crop

TERM_HELP = (
    "[WEIGHT:]TERM: an indexed image (its id, or the path of an indexed file), another image file, "
    "or else a text; WEIGHT > 0, default 1 (repeatable)"
)

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


def _crop(value: str | None) -> Crop | None:
    from pixseek.search.query import Crop

    return None if value is None else Crop.parse(value)


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
    crop: Annotated[
        str | None,
        typer.Option(
            metavar="X,Y,W,H",
            help="Search by this region of --image or --like: pixels, or fractions of the width and "
            "height when a value has a decimal point (0.5,0,0.5,1 = the right half)",
        ),
    ] = None,
    plus: Annotated[
        list[str] | None, typer.Option(metavar="[W:]TERM", help=f"Add a term to the query. {TERM_HELP}")
    ] = None,
    minus: Annotated[
        list[str] | None,
        typer.Option(metavar="[W:]TERM", help=f"Push results away from a term. {TERM_HELP}"),
    ] = None,
    k: Annotated[int, typer.Option("-k", metavar="N", help="Number of results", min=1, max=10_000)] = 10,
    sort: Annotated[
        SortOrder,
        typer.Option(
            metavar="ORDER",
            help="relevance, taken (oldest first), -taken (newest first) or path; any order but "
            "relevance lists every match above the cutoff (with --cutoff none: every image, to browse "
            "by date), undated images last",
        ),
    ] = SortOrder.RELEVANCE,
    cutoff: Annotated[
        Cutoff | None,
        typer.Option(
            metavar="CUTOFF",
            help="auto: keep only results that stand out from the query's own score distribution "
            "(docs/search.md; with --rerank it cuts the candidates); none: the top -k "
            "[default: auto with --sort, else none]",
        ),
    ] = None,
    mode: Annotated[
        SearchMode | None,
        typer.Option(
            metavar="MODE",
            help="hybrid: the embedding and the keyword index (OCR text, file names, EXIF/XMP "
            "titles, descriptions, keywords) fused; semantic: the embedding only; text: the words "
            'only, "quoted phrases" exact [default: hybrid once the collection has keyword text, '
            "else semantic]",
        ),
    ] = None,
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
    ray_address: Annotated[
        str | None,
        typer.Option(
            metavar="ADDRESS",
            help="Rank with the collection's shards on this Ray cluster instead of the local index "
            "(needs pip install 'pixseek[ray]'): auto, HOST:6379, ray://HOST:10001, or local (a Ray "
            "on this machine); each shard loads its share from the database (docs/distributed.md) "
            "[env: PIXSEEK_RAY_ADDRESS]",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Search the collection by text, by an image file (--image), by an indexed image (--like), or
    by several of them at once: --plus adds a term, --minus pushes results away from one.

    A query of several terms is one vector: each term is embedded and normalised, multiplied by its
    weight (--minus negates it), the terms are summed and the sum normalised again. So
    `"a dog" --plus ./pool.jpg` finds dogs by pools, `"a dog" --minus leash` dogs without one, and
    `--plus 0.5:./pool.jpg` gives the pool half the say of the text (measured on a trained model, an
    image added to a text works best at 0.25-0.5: docs/search.md). Indexed images a query names
    are left out of its results.

    Words count too: --mode text searches file and folder names, EXIF/XMP titles, descriptions and
    keywords (and OCR text); hybrid, the default once a collection has such text, fuses them with
    the embedding.

    Queries with a text can be re-ranked (--rerank): slower, but ordered by a model that reads the
    text and each image together, with a match probability --min-score can cut on. The re-rankers
    score the query's positive texts (an image-text matcher reads one text per image); queries
    without a text (--image or --like alone) are not re-ranked.

    --sort taken lists every match above the cutoff, oldest first (-taken: newest first), so a
    date-ordered search shows what matches, not the top -k of everything."""
    from pixseek.library import Library

    with user_errors():
        overrides = {
            "device": device,
            "precision": precision,
            "rerank": rerank,
            "rerank_k": rerank_k,
            "ray_address": ray_address,
            **reranker_models,
        }
        chosen = settings(ctx, **overrides)
        if chosen.ray_address is not None:
            from pixseek.distributed import require_ray

            require_ray()  # before the model loads: a missing extra is a one-line error at once
        quiet_model_loading()
        with Library(chosen) as library:
            terms = [library.query_term(spec, model=model) for spec in plus or ()]
            terms += [library.query_term(spec, negative=True, model=model) for spec in minus or ()]
            outcome = library.search(
                query,
                image=image,
                like=like,
                crop=_crop(crop),
                terms=terms,
                k=k,
                filters=filters,
                min_score=min_score,
                model=model,
                sort=sort,
                cutoff=cutoff,
                mode=mode,
            )
    _report_query(outcome, rerank)
    _report_rerank(outcome, min_score)
    if as_json:
        out.print_json(json.dumps([asdict(hit) for hit in outcome.hits], default=str))
    elif not outcome.hits:
        err.print("no results")
    else:
        out.print(_table(outcome))


def _report_query(outcome: SearchOutcome, rerank: str | None) -> None:
    """On stderr, what was searched for when it is more than the one term typed, and the cutoff."""
    query = outcome.query
    if query is not None and query.simple is None:
        err.print(f"query: {query.describe()}")
    if outcome.mode == SearchMode.HYBRID:
        err.print("mode: hybrid, the embedding and the keyword index (--mode semantic: the embedding alone)")
    elif outcome.mode == SearchMode.TEXT and query is not None and query.positive_text is None:
        err.print("note: --mode text matches words, and this query has no text")
    if outcome.rerank_text is not None and (query is None or query.simple is None):
        err.print(f"re-ranked by the query's positive text: {outcome.rerank_text!r}")
    elif not outcome.rerankers and rerank not in (None, "none"):
        err.print("note: --rerank scores a query's text; this one has none, so it is not re-ranked")
    if outcome.cutoff is not None:
        shown = len(outcome.hits)
        if outcome.total is None:
            err.print(f"cutoff: cosine {outcome.cutoff:.4f}; at least {shown} results pass it")
        elif outcome.total > shown:
            err.print(
                f"cutoff: cosine {outcome.cutoff:.4f}; {shown} of {outcome.total} matches shown "
                f"(-k {outcome.total} lists them all)"
            )
        else:
            err.print(f"cutoff: cosine {outcome.cutoff:.4f}; {outcome.total} matches")


def _table(outcome: SearchOutcome) -> Table:
    kinds = outcome.rerankers
    words = outcome.mode != SearchMode.SEMANTIC
    score_columns = ["match", *kinds, "cosine"] if kinds else ["cosine"]
    if outcome.mode == SearchMode.TEXT and not kinds:
        score_columns = ["keyword"]  # no model ran: the score is the keyword index's
    elif words:
        score_columns += ["keyword"]
    table = Table("#", *score_columns, "id", box=None)
    table.add_column("path", overflow="fold")  # the path is the answer: fold it, never cut it
    table.add_column("pixels")  # width x height; --json's "size" is the file's bytes
    table.add_column("taken")
    if words:
        table.add_column("matched", overflow="fold")
    for rank, hit in enumerate(outcome.hits, 1):
        pixels = f"{hit.width}x{hit.height}" if hit.width else ""
        taken = hit.taken_at.strftime("%Y-%m-%d") if hit.taken_at else ""
        scores = [f"{hit.score:.4f}"]
        if kinds:
            itm = [hit.final_score, *((hit.rerank_scores or {}).get(kind) for kind in kinds)]
            scores = [("-" if value is None else f"{value:.4f}") for value in itm] + scores
        if words and score_columns[-1] == "keyword" and len(score_columns) > 1:
            scores.append("-" if hit.keyword_score is None else f"{hit.keyword_score:.4f}")
        row = [str(rank), *scores, str(hit.id), hit.path, pixels, taken]
        if words:
            row.append(", ".join(dict.fromkeys(f"{m.text} ({m.source})" for m in hit.matches)))
        table.add_row(*row)
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
