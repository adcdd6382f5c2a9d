"""The ``pixseek`` command line: index folders, search them, inspect and maintain the store."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from pixseek.config import DEFAULT_MODEL, Settings
from pixseek.embedding import ENCODER_PRESETS
from pixseek.errors import PixseekError
from pixseek.indexer.pipeline import IndexReport
from pixseek.indexer.watch import Watcher, WatchOptions, check_roots
from pixseek.library import Library
from pixseek.search.rerank import RERANKER_PRESETS, FillReport, RerankedSearch, rerank_search
from pixseek.store.repository import ChangeBatch, SearchFilters
from pixseek.store.vector_index import VectorIndex

app = typer.Typer(
    help="pixseek: semantic image search. Index photo folders, then search them by text or by image.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts contain [brackets] and paths, not markup
)
# Messages carry user data (paths with brackets, model ids): never interpret them as rich markup.
out = Console(markup=False)
err = Console(stderr=True, markup=False)

_PRESETS_HELP = ", ".join(f"{name} = {hub}" for name, hub in ENCODER_PRESETS.items())


@app.callback()
def main(
    ctx: typer.Context,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Where the database and indexes live [env PIXSEEK_DATA_DIR; default XDG data dir]"),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(help="SQLAlchemy URL, e.g. postgresql+psycopg://host/db [env PIXSEEK_DATABASE_URL]"),
    ] = None,
    collection: Annotated[
        str | None, typer.Option("--collection", "-c", help="Collection name [default: default]")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    import transformers

    transformers.utils.logging.set_verbosity_error()  # checkpoint-loading chatter is not for users
    transformers.utils.logging.disable_progress_bar()
    overrides = {"data_dir": data_dir, "database_url": database_url, "collection": collection}
    ctx.obj = {k: v for k, v in overrides.items() if v is not None}


def _settings(ctx: typer.Context, **overrides) -> Settings:
    values = {**ctx.obj, **{k: v for k, v in overrides.items() if v is not None}}
    return Settings(**values)


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Errors a user can fix print as one line with exit code 2, never as a traceback."""
    try:
        yield
    except ValidationError as error:  # a bad option value or PIXSEEK_* environment variable
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        err.print(f"error: invalid setting: {problems}", style="red")
        raise typer.Exit(2) from None
    except (PixseekError, FileNotFoundError, NotADirectoryError, ValueError) as error:
        err.print(f"error: {error}", style="red")
        raise typer.Exit(2) from None


ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help=f"Preset, hub id or local checkpoint dir [default: {DEFAULT_MODEL}]. {_PRESETS_HELP}",
    ),
]
SearchModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="Model for the query [default: the one the collection was built with; must match it]",
    ),
]
DeviceOption = Annotated[str | None, typer.Option(help="auto (CUDA when present), cpu, cuda, cuda:1 ...")]
PrecisionOption = Annotated[
    str | None,
    typer.Option(help="auto = fp16 on CUDA, bf16 on CPUs with native bf16, else fp32; or fp32|bf16|fp16"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output")]
# The vector index: how it is chosen and tuned (pixseek.store.ann).
IndexTypeOption = Annotated[
    str | None,
    typer.Option(
        "--index-type",
        help="Vector index: auto (exact Flat up to 100k vectors, then IVF; when raw vectors exceed "
        "--memory-budget IVF-SQ8, or IVF-PQ with exact re-ranking), flat, ivf, ivfsq, ivfpq or hnsw "
        "[env PIXSEEK_INDEX_TYPE]",
    ),
]
MemoryBudgetOption = Annotated[
    str | None,
    typer.Option(
        help="Memory the vector index may use, e.g. 8G [env PIXSEEK_MEMORY_BUDGET; default: half the "
        "available RAM]"
    ),
]
RecallTargetOption = Annotated[
    float | None,
    typer.Option(
        min=0.01, max=1.0, help="recall@10 the index's search parameters are tuned to [default: 0.95]"
    ),
]
# Shared by index and watch: which files count, and how the indexing pipeline runs.
BatchSizeOption = Annotated[int | None, typer.Option(help="Images per model call [default: 32]")]
WorkersOption = Annotated[int | None, typer.Option(help="Decoding threads [default: CPU count]")]
IncludeOption = Annotated[list[str] | None, typer.Option(help="Only files matching this glob (repeatable)")]
ExcludeOption = Annotated[list[str] | None, typer.Option(help="Skip files matching this glob (repeatable)")]
HiddenOption = Annotated[bool, typer.Option(help="Also index hidden files and folders")]
BridgeTowerModelOption = Annotated[
    str | None,
    typer.Option(
        help="BridgeTower ITM checkpoint: preset, hub id or local dir "
        f"[env PIXSEEK_BRIDGETOWER_MODEL; default: bridgetower = {RERANKER_PRESETS['bridgetower']}]"
    ),
]
Blip2ModelOption = Annotated[
    str | None,
    typer.Option(
        "--blip2-model",
        help="BLIP-2 ITM checkpoint: preset, hub id or local dir [env PIXSEEK_BLIP2_MODEL; default: "
        f"blip2 = {RERANKER_PRESETS['blip2']}; blip2-coco = {RERANKER_PRESETS['blip2-coco']}]",
    ),
]


def _progress_bar(show: bool, label: str = "indexing") -> tuple[Progress, Callable[[int, int], None]]:
    """The indexing progress bar on stderr, and the indexer callback that drives it."""
    progress = Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=err,
        disable=not show,
    )
    task = progress.add_task("index", total=None, rate="")

    def on_progress(done: int, total: int) -> None:
        speed = progress.tasks[0].speed
        progress.update(
            task, completed=done, total=total, visible=True, rate=f"{speed:.1f} img/s" if speed else ""
        )

    return progress, on_progress


def _print_report(console: Console, report: IndexReport, suffix: str = "") -> None:
    console.print(
        f"{report.scanned} files: {report.embedded} embedded ({report.images_per_second:.1f} img/s), "
        f"{report.unchanged} unchanged, {report.moved} moved, {report.copied} copies reused, "
        f"{report.removed} removed, {len(report.failed)} failed in {report.seconds:.1f}s{suffix}"
    )
    _print_reasons(console, "failed", report.failed, " (see `pixseek status`)")


def _print_reasons(console: Console, label: str, items: list[tuple[str, str]], more: str = "") -> None:
    """The first 20 (path, reason) pairs, then how many more there are."""
    for path, reason in items[:20]:
        console.print(f"  {label}: {path}: {reason}")
    if len(items) > 20:
        console.print(f"  ... and {len(items) - 20} more{more}")


@app.command()
def index(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="Folders or files to index (recursively)")],
    model: ModelOption = None,
    device: DeviceOption = None,
    precision: PrecisionOption = None,
    batch_size: BatchSizeOption = None,
    workers: WorkersOption = None,
    include: IncludeOption = None,
    exclude: ExcludeOption = None,
    hidden: HiddenOption = False,
    sweep: Annotated[
        bool, typer.Option(help="Remove images whose files are gone from the given paths")
    ] = True,
    retry_failed: Annotated[
        bool, typer.Option(help="Try again files that failed before, even if unchanged")
    ] = False,
    rerank_cache: Annotated[
        str | None,
        typer.Option(
            help="Then cache this re-ranker's image features (bridgetower, blip2 or both) for the whole "
            "collection, up to the cache budget, so that `search --rerank` starts warm"
        ),
    ] = None,
    bridgetower_model: BridgeTowerModelOption = None,
    blip2_model: Blip2ModelOption = None,
    ray: Annotated[
        bool,
        typer.Option(
            "--ray",
            help="Read, decode and embed on Ray actors (needs pip install 'pixseek[ray]'): a local Ray on "
            "this machine, or the cluster of --ray-address (or $RAY_ADDRESS), one actor per GPU. Same "
            "incremental rules and store writes as without it. On a cluster, files must be at the same "
            "paths on every node and the database reachable from every node (docs/distributed.md)",
        ),
    ] = False,
    ray_address: Annotated[
        str | None,
        typer.Option(help="Ray cluster to index on (implies --ray): auto, HOST:6379 or ray://HOST:10001"),
    ] = None,
    ray_actors: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Embedding actors for --ray [default: one per GPU, else one per 4 CPUs of the cluster]",
        ),
    ] = None,
    index_type: IndexTypeOption = None,
    memory_budget: MemoryBudgetOption = None,
    recall_target: RecallTargetOption = None,
    as_json: JsonOption = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary")] = False,
) -> None:
    """Index image folders: new and changed files are embedded, unchanged ones skipped, moved ones
    keep their vectors, and files gone from disk leave the index. Safe to interrupt and run again."""
    with _user_errors():
        settings = _settings(
            ctx,
            model=model,
            device=device,
            precision=precision,
            batch_size=batch_size,
            decode_workers=workers,
            bridgetower_model=bridgetower_model,
            blip2_model=blip2_model,
            index_type=index_type,
            memory_budget=memory_budget,
            recall_target=recall_target,
        )
        for path in paths:
            if not path.exists():
                raise FileNotFoundError(f"no such file or folder: {path}")
        ray = ray or ray_address is not None
        if ray_actors is not None and not ray:
            raise PixseekError("--ray-actors needs --ray")
        if ray:
            from pixseek.distributed import require_ray

            require_ray()  # before the model loads: a missing extra is a one-line error at once
        library = Library(settings)
        encoder = library.load_encoder()
        if not ray:
            indexer = library.indexer(encoder)
        else:
            from pixseek.distributed.ray_indexing import ray_indexer

            indexer = ray_indexer(library, encoder, address=ray_address, actors=ray_actors)
        progress, on_progress = _progress_bar(show=not (quiet or as_json))
        try:
            with progress:
                report = indexer.run(
                    paths,
                    include=include or (),
                    exclude=exclude or (),
                    include_hidden=hidden,
                    sweep=sweep,
                    retry_failed=retry_failed,
                    progress=on_progress,
                )
            _finish_vectors(library, show=not (quiet or as_json))
            fills = _fill_rerank_caches(library, rerank_cache, show=not (quiet or as_json))
        except KeyboardInterrupt:
            err.print("interrupted: finished batches are saved; run the same command again to resume")
            raise typer.Exit(130) from None
        finally:
            library.close()
    if as_json:
        summary = {**asdict(report), "images_per_second": report.images_per_second}
        if fills:
            summary["rerank_cache"] = {kind: asdict(fill) for kind, fill in fills.items()}
        out.print_json(json.dumps(summary))
    elif not quiet:
        _print_report(err, report, f" [{encoder.model_id}, {encoder.device}, {encoder.precision}]")
        for kind, fill in fills.items():
            err.print(
                f"{kind} re-ranker cache: {fill.computed} images cached, {fill.already_cached} already "
                f"were, {fill.over_budget} over the budget (cached when first searched), "
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
        progress, on_progress = _progress_bar(show, label=f"caching {kind} features")
        with progress:
            fills[kind] = library.fill_rerank_cache(scorer, on_progress)
    return fills


@app.command()
def watch(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="Folders to keep indexed (recursively)")],
    model: ModelOption = None,
    device: DeviceOption = None,
    precision: PrecisionOption = None,
    batch_size: BatchSizeOption = None,
    workers: WorkersOption = None,
    include: IncludeOption = None,
    exclude: ExcludeOption = None,
    hidden: HiddenOption = False,
    poll: Annotated[
        bool, typer.Option("--poll", help="Poll every folder instead of waiting for change events")
    ] = False,
    poll_interval: Annotated[float, typer.Option(help="Seconds between two polls", min=0.1)] = 2.0,
    settle: Annotated[
        float, typer.Option(help="Seconds a file must stay unchanged before it is indexed", min=0.05)
    ] = 1.5,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summaries")] = False,
) -> None:
    """Keep the index in step with folders: first index what changed since the last run, then new,
    changed, moved and deleted images as it happens, until Ctrl-C. Folders that send no change
    events (network mounts, inotify watch limit reached) are polled; the log says which."""
    with _user_errors():
        settings = _settings(
            ctx,
            model=model,
            device=device,
            precision=precision,
            batch_size=batch_size,
            decode_workers=workers,
        )
        check_roots(paths)
        options = WatchOptions(
            include=tuple(include or ()),
            exclude=tuple(exclude or ()),
            include_hidden=hidden,
            settle=settle,
            force_polling=poll,
            poll_interval=poll_interval,
        )
        library = Library(settings, background_maintenance=True)  # rebuilds never pause the watch
        try:
            indexer = library.indexer(library.load_encoder())
            progress, on_progress = _progress_bar(show=not quiet)

            def on_report(kind: str, report: IndexReport) -> None:
                progress.reset(progress.task_ids[0], visible=False)
                if not quiet and (kind == "reconcile" or report.changes):
                    _print_report(progress.console, report, f" ({kind} {datetime.now():%H:%M:%S})")

            watcher = Watcher(
                indexer,
                paths,
                options,
                data_dir=settings.data_dir,
                progress=on_progress,
                on_report=on_report,
            )
            with _sigterm_as_ctrl_c(), progress:
                watcher.run()
        except KeyboardInterrupt:
            pass  # Ctrl-C is how a foreground watcher ends; run() has saved the index
        finally:
            library.close()
    err.print("stopped watching")


@contextlib.contextmanager
def _sigterm_as_ctrl_c() -> Iterator[None]:
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
def search(
    ctx: typer.Context,
    query: Annotated[
        str | None, typer.Argument(help="Text to search for, in any language the model knows")
    ] = None,
    image: Annotated[
        Path | None, typer.Option("--image", "-i", help="Search by this image file instead")
    ] = None,
    like: Annotated[
        str | None, typer.Option(help="Images similar to an indexed image (id or path), excluding itself")
    ] = None,
    k: Annotated[int, typer.Option("-k", help="Number of results", min=1, max=10_000)] = 10,
    folder: Annotated[
        list[Path] | None, typer.Option(help="Only images under this folder (repeatable)")
    ] = None,
    after: Annotated[
        datetime | None, typer.Option(help="Taken on or after (EXIF date), e.g. 2021-06-01")
    ] = None,
    before: Annotated[datetime | None, typer.Option(help="Taken on or before (EXIF date)")] = None,
    min_width: Annotated[int | None, typer.Option(help="Minimum width in pixels")] = None,
    min_height: Annotated[int | None, typer.Option(help="Minimum height in pixels")] = None,
    image_format: Annotated[
        list[str] | None, typer.Option("--format", help="Only this format: JPEG, PNG, ... (repeatable)")
    ] = None,
    model: SearchModelOption = None,
    device: DeviceOption = None,
    precision: PrecisionOption = None,
    rerank: Annotated[
        str | None,
        typer.Option(
            help="Re-rank the candidates of a text query with image-text matching: bridgetower, blip2, "
            "both (mean of their match probabilities) or none [env PIXSEEK_RERANK; default: none]. "
            "Skipped for --image and --like: the re-rankers score text-image pairs"
        ),
    ] = None,
    rerank_k: Annotated[
        int | None,
        typer.Option(
            help="Candidates the re-rankers score (at least -k) [default: 50 on CPU, 128 on CUDA]",
            min=1,
            max=10_000,
        ),
    ] = None,
    min_score: Annotated[
        float | None,
        typer.Option(help="With --rerank: drop results whose match probability is below this", min=0, max=1),
    ] = None,
    bridgetower_model: BridgeTowerModelOption = None,
    blip2_model: Blip2ModelOption = None,
    as_json: JsonOption = False,
) -> None:
    """Search the collection by text, by an image file (--image) or by an indexed image (--like).
    Text queries can be re-ranked (--rerank): slower, but ordered by a model that reads the query
    and each image together, with a match probability that --min-score can cut on."""
    with _user_errors():
        modes = [m for m in (query, image, like) if m is not None]
        if len(modes) != 1:
            raise PixseekError("give exactly one of: a text query, --image PATH or --like ID_OR_PATH")
        filters = SearchFilters(
            folders=tuple(os.path.abspath(f) for f in folder or ()),
            taken_after=after,
            taken_before=before,
            min_width=min_width,
            min_height=min_height,
            formats=tuple(image_format or ()),
        )
        library = Library(
            _settings(
                ctx,
                device=device,
                precision=precision,
                rerank=rerank,
                rerank_k=rerank_k,
                bridgetower_model=bridgetower_model,
                blip2_model=blip2_model,
            )
        )
        kinds = library.rerank_kinds() if query is not None else ()
        if min_score is not None and not kinds:
            raise PixseekError(
                "--min-score cuts on the re-rankers' match probability: add --rerank to a text query"
            )
        if query is None and rerank not in (None, "none"):
            err.print("note: --rerank applies to text queries; not re-ranking this one")
        reranked = None
        try:
            searcher = library.searcher(model)
            if kinds:
                scorers = [library.scorer(kind) for kind in kinds]
                reranked = rerank_search(
                    searcher,
                    query,
                    scorers,
                    k=k,
                    rerank_k=library.rerank_k,
                    min_score=min_score,
                    filters=filters,
                )
                hits = reranked.hits
            elif query is not None:
                hits = searcher.by_text(query, k, filters)
            elif image is not None:
                hits = searcher.by_image_file(image, k, filters)
            else:
                hits = searcher.like(like, k, filters)
        finally:
            library.close()
    if reranked is not None:
        _report_rerank(reranked, min_score)
    if as_json:
        out.print_json(json.dumps([asdict(hit) for hit in hits], default=str))
        return
    if not hits:
        err.print("no results")
        return
    score_columns = ["match", *kinds, "cosine"] if kinds else ["score"]
    table = Table("#", *score_columns, "id", box=None)
    table.add_column("path", overflow="fold")  # the path is the answer: fold it, never cut it
    table.add_column("size")
    table.add_column("taken")
    for rank, hit in enumerate(hits, 1):
        size = f"{hit.width}x{hit.height}" if hit.width else ""
        taken = hit.taken_at.strftime("%Y-%m-%d") if hit.taken_at else ""
        scores = [f"{hit.score:.4f}"]
        if kinds:
            itm = [hit.final_score, *((hit.rerank_scores or {}).get(kind) for kind in kinds)]
            scores = [("-" if value is None else f"{value:.4f}") for value in itm] + scores
        table.add_row(str(rank), *scores, str(hit.id), hit.path, size, taken)
    out.print(table)


def _report_rerank(result: RerankedSearch, min_score: float | None) -> None:
    """On stderr, whatever re-ranking could not score or dropped, so that nothing vanishes silently."""
    if result.unscored:
        err.print(
            f"warning: {len(result.unscored)} of {result.candidates} candidates could not be re-ranked:"
        )
        for hit in result.unscored:
            err.print(f"  {hit.path}: {hit.rerank_error}")
    if min_score is not None and result.below_min_score:
        err.print(f"{result.below_min_score} of {result.candidates} candidates below --min-score {min_score}")


@app.command()
def status(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Collections, their model, counts, failures and index size."""
    with _user_errors():
        library = Library(_settings(ctx))
        report = []
        try:
            for info in library.store.collections():
                stats = library.store.stats(info.id)
                index_dir = library.index_path(info)
                index_bytes = sum(f.stat().st_size for f in index_dir.iterdir()) if index_dir.is_dir() else 0
                manifest = index_dir / "manifest.json"
                base = json.loads(manifest.read_text()).get("base") if manifest.exists() else None
                report.append(
                    {
                        "collection": info.name,
                        "model": info.model_id,
                        "fingerprint": info.model_fingerprint,
                        "dim": info.dim,
                        "precision": info.precision,
                        "indexed": stats.indexed,
                        "failed": stats.failed,
                        "last_indexed": stats.last_indexed.isoformat() if stats.last_indexed else None,
                        "index_dir": str(index_dir),
                        "index_bytes": index_bytes,
                        "index_type": base["plan"]["kind"] if base else "flat",
                        "index_params": base["params"] if base else {},
                        "index_recall": base["measured_recall"] if base else 1.0,
                        "failures": [{"path": p, "reason": r} for p, r in library.store.failures(info.id)],
                    }
                )
        finally:
            library.close()
    if as_json:
        out.print_json(
            json.dumps({"database": library.settings.resolved_database_url, "collections": report})
        )
        return
    out.print(f"database: {library.settings.resolved_database_url}")
    if not report:
        out.print("no collections yet: run `pixseek index PATH`")
    for entry in report:
        out.print(
            f"{entry['collection']}: {entry['indexed']} images, {entry['failed']} failed; "
            f"model {entry['model']} ({entry['dim']}-d, {entry['precision']}, "
            f"fingerprint {entry['fingerprint']}); "
            f"index {entry['index_type']} {entry['index_bytes'] / 1e6:.1f} MB"
            + (
                f" {entry['index_params']}, recall@10 {entry['index_recall']:.3f}"
                if entry["index_params"]
                else ""
            )
        )
        for failure in entry["failures"]:
            out.print(f"  failed: {failure['path']}: {failure['reason']}")


@app.command()
def rm(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="Files or folders whose images leave the collection")],
) -> None:
    """Remove images from the collection (the files on disk are not touched)."""
    with _user_errors():
        library = Library(_settings(ctx))
        try:
            collection = library.collection()
            known = library.store.known_files(collection.id, [os.path.abspath(p) for p in paths])
            vectors = library.vectors(collection)
            changes = library.store.apply(
                collection.id, ChangeBatch(deleted=[row.id for row in known.values()])
            )
            vectors.update(changes.added_ids, changes.added_vectors, changes.removed_ids, changes.generation)
            vectors.save(library.index_path(collection))
        finally:
            library.close()
    err.print(f"removed {len(known)} images")


@app.command()
def reindex(
    ctx: typer.Context,
    rebuild: Annotated[
        bool,
        typer.Option(
            help="Rebuild the FAISS index from the embeddings stored in SQL (no model needed): choose "
            "the index type anew for the collection's size and budget, train it, tune its parameters"
        ),
    ] = False,
    index_type: IndexTypeOption = None,
    memory_budget: MemoryBudgetOption = None,
    recall_target: RecallTargetOption = None,
) -> None:
    """Check the FAISS index against SQL and repair it; --rebuild makes it anew (no model needed)."""
    with _user_errors():
        library = Library(
            _settings(ctx, index_type=index_type, memory_budget=memory_budget, recall_target=recall_target)
        )
        try:
            collection = library.collection()
            if rebuild:
                vectors = library.rebuild_vectors(collection)
                info = vectors.describe()
                err.print(
                    f"rebuilt {library.index_path(collection)}: {len(vectors)} vectors, {info['factory']} "
                    f"{info['params']}, measured recall@10 {info['measured_recall']:.3f}"
                )
            else:
                vectors, added, removed = library.open_vectors(collection)
                err.print(
                    f"index in step with SQL: {len(vectors)} vectors (+{added} added, -{removed} stale)"
                )
                library.finish_vectors(collection)
        finally:
            library.close()


@app.command()
def drop(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Collection to delete with its index (files on disk stay)")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation")] = False,
) -> None:
    """Delete a collection and its index, to re-index with another model, say."""
    with _user_errors():
        library = Library(_settings(ctx, collection=name))
        try:
            if not yes and not typer.confirm(f"delete collection {name!r} and its index?", err=True):
                raise typer.Exit(1)
            if not library.store.drop_collection(name):
                raise PixseekError(f"no collection {name!r}")
            shutil.rmtree(library.index_path(name), ignore_errors=True)
            for path in VectorIndex.legacy_paths(library.index_path(name)):
                path.unlink(missing_ok=True)
        finally:
            library.close()
    err.print(f"dropped {name}")


_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@app.command()
def serve(
    ctx: typer.Context,
    roots: Annotated[
        list[Path] | None,
        typer.Option(
            "--root", "-r", help="Library folder to index and serve (repeatable) [env PIXSEEK_LIBRARY_ROOTS]"
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port")] = 8000,
    api_key: Annotated[
        str | None, typer.Option(help="Key required by mutating endpoints [env PIXSEEK_API_KEY]")
    ] = None,
    allow_no_key: Annotated[
        bool, typer.Option(help="Allow binding a non-loopback address without an API key")
    ] = False,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(help="Allow browser calls from this origin (repeatable); default: CORS off"),
    ] = None,
    watch: Annotated[
        bool | None,
        typer.Option(
            "--watch/--no-watch", help="Index changes in the roots as they happen [env PIXSEEK_WATCH]"
        ),
    ] = None,
    poll: Annotated[
        bool | None, typer.Option("--poll", help="Watch by polling (network mounts, inotify limits)")
    ] = None,
    rerank: Annotated[
        str | None,
        typer.Option(
            help="Re-rankers to load and offer: none, bridgetower, blip2 or both; also the default for "
            "searches that do not choose [env PIXSEEK_RERANK]"
        ),
    ] = None,
    model: ModelOption = None,
    bridgetower_model: BridgeTowerModelOption = None,
    blip2_model: Blip2ModelOption = None,
    device: DeviceOption = None,
    precision: PrecisionOption = None,
) -> None:
    """Serve the REST API (docs at /docs) and the search page (at /) over the library roots;
    with --watch, changes in the roots are indexed as they happen."""
    import uvicorn

    from pixseek.api.app import create_app
    from pixseek.api.config import ServerSettings

    with _user_errors():
        overrides = {
            "library_roots": roots,
            "api_key": api_key,
            "cors_origins": cors_origin,
            "watch": watch,
            "watch_poll": poll,
            "rerank": rerank,
            "bridgetower_model": bridgetower_model,
            "blip2_model": blip2_model,
            "model": model,
            "device": device,
            "precision": precision,
        }
        settings = ServerSettings(**{**ctx.obj, **{k: v for k, v in overrides.items() if v is not None}})
        if host not in _LOOPBACK and not settings.api_key and not allow_no_key:
            raise PixseekError(
                f"refusing to serve on {host} without an API key: set --api-key (or PIXSEEK_API_KEY), "
                "or pass --allow-no-key if the network is trusted"
            )
        application = create_app(settings)
    uvicorn.run(application, host=host, port=port, log_level="info")


@app.command("eval")
def evaluate_command(
    ctx: typer.Context,
    captions: Annotated[
        Path, typer.Argument(help="Captions file: JSONL or CSV with image, caption[, language]")
    ],
    images: Annotated[Path, typer.Option("--images", help="Folder the image paths are relative to")],
    model: ModelOption = None,
    device: DeviceOption = None,
    precision: PrecisionOption = None,
    batch_size: BatchSizeOption = None,
    rerank: Annotated[
        str, typer.Option(help="Also evaluate text->image re-ranked by: none, bridgetower, blip2 or both")
    ] = "none",
    rerank_k: Annotated[int, typer.Option(help="First-stage candidates to re-rank per caption", min=1)] = 16,
    bridgetower_model: BridgeTowerModelOption = None,
    blip2_model: Blip2ModelOption = None,
    as_json: JsonOption = False,
) -> None:
    """Measure retrieval quality on an image-caption set: text->image and image->text recall@1/5/10
    and mean rank, per language when given, first stage and re-ranked, with time per query."""
    from pixseek.evaluation.dataset import load_caption_set
    from pixseek.evaluation.runner import evaluate

    with _user_errors():
        settings = _settings(
            ctx,
            model=model,
            device=device,
            precision=precision,
            batch_size=batch_size,
            bridgetower_model=bridgetower_model,
            blip2_model=blip2_model,
        )
        data = load_caption_set(captions, images)
        library = Library(settings)
        encoder = library.load_encoder()
        scorers = {kind: library.scorer(kind) for kind in library.rerank_kinds(rerank)}
        report = evaluate(encoder, data, batch_size=settings.batch_size, scorers=scorers, rerank_k=rerank_k)
    if as_json:
        out.print_json(json.dumps(asdict(report)))
        return
    table = Table("direction", "stage", "R@1", "R@5", "R@10", "mean rank", "ms/query", box=None)
    rows = [("text->image", stage, m) for stage, m in report.text_to_image.items()]
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
    out.print(f"{report.images} images, {report.captions} captions, model {encoder.model_id}")
    out.print(table)


@app.command("train")
def train_command(
    ctx: typer.Context,
    captions: Annotated[
        Path,
        typer.Argument(help="Training captions: JSONL or CSV with image, caption[, language], as for eval"),
    ],
    images: Annotated[Path, typer.Option("--images", help="Folder the image paths are relative to")],
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", help="Folder for checkpoints and the final model (use it as index --model DIR)"
        ),
    ],
    vision: Annotated[
        str | None, typer.Option(help="Vision tower to start from: hub id or local dir (e.g. a ViT)")
    ] = None,
    text: Annotated[
        str | None, typer.Option(help="Text tower to start from: hub id or local dir (e.g. BERT, XLM-R)")
    ] = None,
    from_model: Annotated[
        str | None,
        typer.Option("--from", help="Continue a saved VisionTextDualEncoder instead of --vision/--text"),
    ] = None,
    projection_dim: Annotated[
        int, typer.Option(help="Size of the shared embedding space for a new dual encoder", min=1)
    ] = 512,
    steps: Annotated[
        int | None, typer.Option(help="Optimizer steps [default: --epochs worth of steps]", min=1)
    ] = None,
    epochs: Annotated[float, typer.Option(help="Passes over the images when --steps is not given")] = 1.0,
    batch_size: Annotated[int, typer.Option(help="Image-caption pairs per micro-batch", min=1)] = 32,
    accumulate: Annotated[
        int,
        typer.Option(
            help="Micro-batches per optimizer step; the contrastive loss spans all of them (gradient "
            "caching), so the effective batch is batch-size x accumulate",
            min=1,
        ),
    ] = 1,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (AdamW)")] = 1e-4,
    warmup: Annotated[
        int | None,
        typer.Option(help="Linear warm-up steps, then cosine decay [default: 10% of steps]", min=0),
    ] = None,
    min_lr_ratio: Annotated[
        float, typer.Option(help="Learning rate at the end, as a fraction of --lr", min=0.0, max=1.0)
    ] = 0.0,
    weight_decay: Annotated[
        float, typer.Option(help="AdamW weight decay (not on biases, norms, temperature)", min=0.0)
    ] = 0.1,
    max_grad_norm: Annotated[
        float, typer.Option(help="Clip the gradient norm to this; 0 turns clipping off", min=0.0)
    ] = 1.0,
    lock_image: Annotated[
        bool, typer.Option("--lock-image", help="LiT: freeze the image tower (its projection still trains)")
    ] = False,
    lock_text: Annotated[
        bool, typer.Option("--lock-text", help="Freeze the text tower (its projection still trains)")
    ] = False,
    device: DeviceOption = None,
    precision: Annotated[
        str | None,
        typer.Option(
            help="auto = bf16 autocast on GPUs that have it, else fp16 autocast with a grad scaler on "
            "CUDA; bf16 autocast on CPUs with native bf16 (AVX512-BF16/AMX), else fp32; or fp32|bf16|fp16"
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for the batch order, dropout and new projections")] = 0,
    checkpoint_every: Annotated[
        int, typer.Option(help="Save a resumable checkpoint every N steps", min=1)
    ] = 500,
    keep_checkpoints: Annotated[int, typer.Option(help="Keep the last N checkpoints", min=1)] = 2,
    max_text_tokens: Annotated[int, typer.Option(help="Truncate captions to this many tokens", min=2)] = 64,
    eval_captions: Annotated[
        Path | None,
        typer.Option(
            help="Held-out captions file: recall@k before training, every --eval-every steps and after"
        ),
    ] = None,
    eval_images: Annotated[
        Path | None, typer.Option(help="Folder of the held-out images [default: --images]")
    ] = None,
    eval_every: Annotated[
        int, typer.Option(help="Evaluate every N steps (0: only before and after)", min=0)
    ] = 0,
    cache_mb: Annotated[
        int, typer.Option(help="Memory for pre-processed training images (decoded once, reused)", min=0)
    ] = 2048,
    workers: WorkersOption = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the last checkpoint in --output (same options)")
    ] = False,
    as_json: JsonOption = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary")] = False,
) -> None:
    """Fine-tune a VisionTextDualEncoder contrastively (CLIP loss) on an image-caption set: build it
    from a vision and a text tower or continue a saved one; Ctrl-C saves a checkpoint to --resume."""
    from pixseek.evaluation.dataset import load_caption_set
    from pixseek.training.loop import TrainingInterrupted, TrainOptions, train

    show = not (quiet or as_json)
    with _user_errors():
        settings = _settings(ctx, device=device, precision=precision)
        options = TrainOptions(
            output=output,
            vision=vision,
            text=text,
            from_model=from_model,
            projection_dim=projection_dim,
            steps=steps,
            epochs=epochs,
            batch_size=batch_size,
            accumulate=accumulate,
            lr=lr,
            min_lr_ratio=min_lr_ratio,
            warmup=warmup,
            weight_decay=weight_decay,
            max_grad_norm=max_grad_norm or None,
            lock_image=lock_image,
            lock_text=lock_text,
            device=settings.device,
            precision=settings.precision,
            seed=seed,
            checkpoint_every=checkpoint_every,
            keep_checkpoints=keep_checkpoints,
            max_text_tokens=max_text_tokens,
            eval_every=eval_every,
            cache_mb=cache_mb,
            workers=workers,
            resume=resume,
        )
        data = load_caption_set(captions, images)
        eval_data = load_caption_set(eval_captions, eval_images or images) if eval_captions else None
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

        def on_eval(point) -> None:
            recall = point.text_to_image.recall
            err.print(
                f"step {point.step}: held-out text->image R@1 {recall[1]:.3f}  R@5 {recall[5]:.3f}  "
                f"R@10 {recall[10]:.3f}"
            )

        try:
            with progress:
                report = train(
                    options,
                    data,
                    eval_data=eval_data,
                    on_scan=lambda done, total: progress.update(
                        scanning, completed=done, total=total, visible=True
                    ),
                    on_step=on_step,
                    on_eval=on_eval if show else None,
                )
        except TrainingInterrupted as interrupted:
            err.print(f"{interrupted}; continue with the same command plus --resume")
            raise typer.Exit(130) from None
        except KeyboardInterrupt:  # while loading or decoding, before the first step
            err.print("interrupted before training started; nothing to resume")
            raise typer.Exit(130) from None
    if as_json:
        out.print_json(json.dumps(asdict(report)))
        return
    if quiet:
        return
    losses = ""
    if report.final_loss is not None:
        losses = f"loss {report.first_loss:.4f} -> {report.final_loss:.4f}; "
    err.print(
        f"trained steps {report.start_step}..{report.steps} ({report.batch_size} pairs each, {report.images} "
        f"images) in {report.seconds:.1f}s, {report.pairs_per_second:.1f} pairs/s [{report.device}, "
        f"{report.precision}]; {losses}{len(report.skipped)} images skipped"
    )
    _print_reasons(err, "skipped", report.skipped)
    err.print(f"saved {report.output}; use it with: pixseek index --model {report.output} ...")


if __name__ == "__main__":
    sys.exit(app())
