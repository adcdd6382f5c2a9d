"""Commands that change a collection: index, watch, rm, reindex and drop."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
from collections.abc import Iterator
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pixseek.cli.common import (
    err,
    global_options,
    out,
    plural,
    print_reasons,
    progress_bar,
    quiet_model_loading,
    settings,
    user_errors,
)
from pixseek.cli.options import (
    JsonOption,
    PathsArgument,
    PipelineOptions,
    QuietOption,
    RayOptions,
    index_options,
    pipeline_options,
    ray_options,
    reranker_model_options,
)
from pixseek.errors import PixseekError
from pixseek.vocabulary import OcrEngine, RerankChoice

if TYPE_CHECKING:
    from rich.console import Console

    from pixseek.library import (
        FillReport,
        IndexDescription,
        IndexReport,
        Library,
        SavedIndexSummary,
        WatcherState,
    )

app = typer.Typer()


def print_report(console: Console, report: IndexReport, suffix: str = "") -> None:
    console.print(  # one line however narrow the terminal or a log: soft_wrap
        f"{plural(report.scanned, 'file')}: {report.embedded} embedded "
        f"({report.images_per_second:.1f} img/s), "
        f"{report.unchanged} unchanged, {report.moved} moved, {plural(report.copied, 'copy', 'copies')} "
        f"reused, {report.removed} removed, {len(report.failed)} failed in {report.seconds:.1f}s{suffix}",
        soft_wrap=True,
    )
    print_reasons(console, "failed", report.failed, " (see `pixseek status`)")
    print_reasons(console, "skipped", report.unreadable)
    if report.text_read or report.text_unread:
        console.print(f"OCR read {plural(report.text_read, 'image')}", soft_wrap=True)
        print_reasons(console, "no text read", report.text_unread)


@app.command()
@global_options
@pipeline_options
@ray_options
@index_options
@reranker_model_options
def index(
    ctx: typer.Context,
    paths: PathsArgument,
    pipeline: PipelineOptions,
    distributed: RayOptions,
    index_settings: dict[str, object],
    reranker_models: dict[str, object],
    sweep: Annotated[
        bool, typer.Option(help="Remove images whose files are gone from the given paths")
    ] = True,
    retry_failed: Annotated[
        bool, typer.Option(help="Try again files that failed before, even if unchanged")
    ] = False,
    rerank_cache: Annotated[
        RerankChoice | None,
        typer.Option(
            metavar="RERANKER",
            help="Then cache this re-ranker's image features (bridgetower, blip2 or both) for the whole "
            "collection, up to the cache budget, so that `search --rerank` starts warm",
        ),
    ] = None,
    ocr: Annotated[
        bool | None,
        typer.Option(
            "--ocr/--no-ocr",
            help="Read the words in images (signs, receipts, screenshots) for keyword and hybrid "
            "search; recorded on the collection, so later index, watch and server runs follow it. "
            "Images indexed before are read too. Needs the ocr extra: pip install 'pixseek[ocr]'",
            show_default="as the collection records, off for a new one",
        ),
    ] = None,
    ocr_lang: Annotated[
        str | None,
        typer.Option(
            metavar="LANGS",
            help="Languages OCR reads, comma-separated ISO 639-1 codes (en,de,fr,zh,...); implies --ocr",
            show_default="en",
        ),
    ] = None,
    ocr_engine: Annotated[
        OcrEngine | None,
        typer.Option(
            help="OCR engine; auto: RapidOCR, or Tesseract for scripts RapidOCR cannot read "
            "(measured in docs/search.md); implies --ocr",
            show_default="auto",
        ),
    ] = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Index image folders: new and changed files are embedded, unchanged ones skipped, moved ones
    keep their vectors, and files gone from disk leave the index. Safe to interrupt and run again.
    A collection keeps the model it was built with, and its OCR setting: later runs use them
    without --model or --ocr."""
    from pixseek.library import Library, OcrChoice

    show = not (quiet or as_json)
    with user_errors():
        overrides = {**pipeline.settings_overrides(), **index_settings, **reranker_models}
        library = Library(settings(ctx, **overrides))
        library.check_index_paths(paths)
        if distributed.ray_actors is not None and not distributed.enabled:
            raise PixseekError("--ray-actors needs --ray")
        if distributed.enabled:
            from pixseek.distributed import require_ray

            require_ray()  # before the model loads: a missing extra is a one-line error at once
        languages = tuple(code for code in (ocr_lang or "").split(",") if code.strip())
        if ocr_lang is not None and not languages:
            raise PixseekError("--ocr-lang needs at least one language code, e.g. --ocr-lang en,de")
        ocr_choice = OcrChoice(ocr, languages, ocr_engine)
        with library:
            library.check_ocr(ocr_choice)  # a missing extra fails now, not after the model loads
            quiet_model_loading()
            encoder = library.load_encoder()
            indexer = (
                library.ray_indexer(encoder, distributed.ray_address, distributed.ray_actors, ocr_choice)
                if distributed.enabled
                else library.indexer(encoder, ocr=ocr_choice)
            )
            progress, on_progress = progress_bar(show)
            try:
                with progress:
                    report = indexer.run(
                        paths,
                        include=pipeline.include or (),
                        exclude=pipeline.exclude or (),
                        include_hidden=pipeline.hidden,
                        sweep=sweep,
                        retry_failed=retry_failed,
                        progress=on_progress,
                    )
                _finish_vectors(library, show)
                fills = _fill_rerank_caches(library, rerank_cache, show)
            except KeyboardInterrupt:
                err.print("interrupted: finished batches are saved; run the same command again to resume")
                raise typer.Exit(130) from None
    if as_json:
        summary = {**asdict(report), "images_per_second": report.images_per_second}
        if fills:
            summary["rerank_cache"] = {kind: asdict(fill) for kind, fill in fills.items()}
        out.print_json(json.dumps(summary))
    elif not quiet:
        print_report(err, report, f" [{encoder.model_id}, {encoder.runtime}]")
        for kind, fill in fills.items():
            err.print(
                f"{kind} re-ranker cache: {plural(fill.computed, 'image')} cached, {fill.already_cached} "
                f"already were, {fill.over_budget} over the budget (cached when first searched), "
                f"{len(fill.failed)} unreadable"
            )


def _finish_vectors(library: Library, show: bool) -> None:
    """Build the vector index the collection's size now calls for (IVF past 100k vectors...)."""
    collection = library.collection()
    planned = library.vectors(collection).planned()
    if planned and show:
        err.print(f"building the {planned[0].factory_key()} vector index ({planned[1]})...")
    library.finish_vectors(collection)


def _fill_rerank_caches(library: Library, choice: str | None, show: bool) -> dict[str, FillReport]:
    """``index --rerank-cache``: compute each chosen re-ranker's image features into its cache."""
    fills = {}
    for kind in library.rerank_kinds(choice) if choice else ():
        scorer = library.scorer(kind)
        progress, on_progress = progress_bar(show, label=f"caching {kind} features")
        with progress:
            fills[kind] = library.fill_rerank_cache(scorer, on_progress)
    return fills


@app.command()
@global_options
@pipeline_options
def watch(
    ctx: typer.Context,
    paths: Annotated[
        list[Path],
        typer.Argument(metavar="FOLDER", help="Folders to keep indexed (recursively)", show_default=False),
    ],
    pipeline: PipelineOptions,
    poll: Annotated[
        bool, typer.Option("--poll", help="Poll every folder instead of waiting for change events")
    ] = False,
    poll_interval: Annotated[
        float, typer.Option(help="Seconds between two polls", min=0.1, metavar="SECONDS")
    ] = 2.0,
    settle: Annotated[
        float,
        typer.Option(
            help="Seconds a file must stay unchanged before it is indexed", min=0.05, metavar="SECONDS"
        ),
    ] = 1.5,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summaries")] = False,
) -> None:
    """Keep the index in step with folders: first index what changed since the last run, then new,
    changed, moved and deleted images as it happens, until Ctrl-C. Folders that send no change
    events (network mounts, inotify watch limit reached) are polled; the log says which."""
    from pixseek.library import Library, Watcher, WatchOptions

    with user_errors():
        library = Library(settings(ctx, **pipeline.settings_overrides()), background_maintenance=True)
        library.check_watch_paths(paths)
        options = WatchOptions(
            include=tuple(pipeline.include or ()),
            exclude=tuple(pipeline.exclude or ()),
            include_hidden=pipeline.hidden,
            settle=settle,
            force_polling=poll,
            poll_interval=poll_interval,
        )
        with library:  # background maintenance: index rebuilds never pause the watch
            quiet_model_loading()
            indexer = library.indexer(library.load_encoder())
            progress, on_progress = progress_bar(show=not quiet)

            def on_report(kind: str, report: IndexReport) -> None:
                progress.reset(progress.task_ids[0], visible=False)
                if not quiet and (kind == "reconcile" or report.changes):
                    print_report(progress.console, report, f" ({kind} {datetime.now():%H:%M:%S})")

            watcher = Watcher(
                indexer,
                paths,
                options,
                data_dir=library.settings.data_dir,
                progress=on_progress,
                on_report=on_report,
                on_watching=None if quiet else lambda state: _print_watching(progress.console, state),
            )
            try:
                with sigterm_as_ctrl_c(), progress:
                    watcher.run()
            except KeyboardInterrupt:
                pass  # Ctrl-C is how a foreground watcher ends; run() has saved the index
    err.print("stopped watching")


def _print_watching(console: Console, state: WatcherState) -> None:
    """Once events are followed: what is watched, how, and how to stop."""
    for root in state.roots:  # one line each, however narrow the terminal (or a log file)
        how = f"polling ({root.reason})" if root.reason else root.mode
        console.print(f"watching {root.path} by {how}", soft_wrap=True)
    console.print(
        "new, changed, moved and deleted images are indexed as they settle; Ctrl-C stops", soft_wrap=True
    )


@contextlib.contextmanager
def sigterm_as_ctrl_c() -> Iterator[None]:
    """``kill``, systemd and docker stop a service with SIGTERM: end as cleanly as on Ctrl-C, also
    in the middle of a long reconcile (the indexer saves its finished batches on the way out)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set signal handlers
        return
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@app.command()
@global_options
def rm(
    ctx: typer.Context,
    paths: Annotated[
        list[Path],
        typer.Argument(
            metavar="PATH", help="Files or folders whose images leave the collection", show_default=False
        ),
    ],
    undo: Annotated[
        bool,
        typer.Option(
            "--undo",
            help="Let PATH back in instead: lift what an earlier `pixseek rm` recorded, so that the next "
            "`pixseek index` adds its images again",
        ),
    ] = False,
) -> None:
    """Remove images from the collection and keep them out: later `index`, `watch` and `serve` runs
    pass over these paths until `pixseek rm --undo PATH`. The files on disk are not touched."""
    from pixseek.library import Library

    with user_errors(), Library(settings(ctx)) as library:
        if undo:
            lifted = library.let_back(paths)
            err.print(f"no longer kept out: {', '.join(lifted)}; `pixseek index` adds their images again")
            return
        removal = library.remove(paths)
    err.print(
        f"removed {plural(removal.removed, 'image')}; kept out of later runs: {', '.join(removal.excluded)} "
        "(undo: pixseek rm --undo PATH)"
    )


@app.command()
@global_options
@index_options
def reindex(
    ctx: typer.Context,
    index_settings: dict[str, object],
    rebuild: Annotated[
        bool,
        typer.Option(
            help="Rebuild the FAISS index from the embeddings stored in SQL (no model needed): choose "
            "the index type anew for the collection's size and budget, train it, tune its parameters"
        ),
    ] = False,
) -> None:
    """Check the FAISS index against SQL and repair it; --rebuild makes it anew (no model needed)."""
    from pixseek.library import Library

    with user_errors(), Library(settings(ctx, **index_settings)) as library:
        collection = library.collection()
        if rebuild:
            vectors = library.rebuild_vectors(collection)
            info = vectors.describe()
            err.print(
                f"rebuilt {library.index_path(collection)}: {plural(len(vectors), 'vector')}, "
                f"{index_line(info)}"
            )
        else:
            vectors, added, removed = library.open_vectors(collection)
            err.print(
                f"index in step with SQL: {plural(len(vectors), 'vector')} (+{added} added, -{removed} stale)"
            )
            library.finish_vectors(collection)


def index_line(info: IndexDescription | SavedIndexSummary) -> str:
    """'IVF1024,Flat nprobe 8, measured recall@10 0.962' or 'exact (IDMap2,Flat)'."""
    if not info.params:
        return f"exact search ({info.factory})"
    params = ", ".join(f"{name} {value}" for name, value in info.params.items())
    return f"{info.factory} {params}, measured recall@10 {info.measured_recall or 0:.3f}"


@app.command()
@global_options
def drop(
    ctx: typer.Context,
    name: Annotated[
        str,
        typer.Argument(metavar="COLLECTION", help="Collection to delete with its index (files on disk stay)"),
    ],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation")] = False,
) -> None:
    """Delete a collection and its index, to re-index with another model, say."""
    from pixseek.library import Library

    with user_errors(), Library(settings(ctx, collection=name)) as library:
        if not yes and not typer.confirm(f"delete collection {name!r} and its index?", err=True):
            raise typer.Exit(1)
        library.drop(name)
    err.print(f"dropped {name}")
