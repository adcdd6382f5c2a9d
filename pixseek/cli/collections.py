"""``pixseek collections``: list collections, build one beside the active one with another model,
activate it, remove one.

Switching a library to another model without downtime is ``collections create NEW --model M``
(the active collection keeps answering while NEW is built from the same folders, reusing the words
OCR read), then ``collections activate NEW``: every command and running server uses NEW from then
on, the server without a restart.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pixseek.cli.common import (
    err,
    global_options,
    out,
    plural,
    progress_bar,
    quiet_model_loading,
    settings,
    user_errors,
)
from pixseek.cli.indexing import print_report
from pixseek.cli.options import JsonOption, QuietOption

app = typer.Typer(
    name="collections",
    help="List collections, build one beside the active one (another model: no downtime), activate it, "
    "remove one. Without a subcommand: list.",
    invoke_without_command=True,
)

NameArgument = Annotated[
    str,
    typer.Argument(
        metavar="NAME", help="Collection name: letters, digits, '_', '.', '-'", show_default=False
    ),
]


@app.callback()
def collections(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:
        _print_list(ctx, as_json=False)


@app.command("list")
@global_options
def list_collections(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Every collection with its model, state (building or ready), size and OCR; * marks the active one."""
    _print_list(ctx, as_json)


def _print_list(ctx: typer.Context, as_json: bool) -> None:
    from pixseek.library import Library

    with user_errors(), Library(settings(ctx)) as library:
        entries = library.collection_entries()
    if as_json:
        out.print_json(json.dumps([asdict(entry) for entry in entries]))
        return
    if not entries:
        out.print("no collections yet: run `pixseek index PATH`")
        return
    table = Table("", "collection", "model", "state", "images", "failed", "OCR", box=None)
    for entry in entries:
        ocr = f"{entry.ocr.engine} ({','.join(entry.ocr.languages)})" if entry.ocr else "-"
        table.add_row(
            "*" if entry.active else "",
            entry.name,
            f"{entry.model} ({entry.dim}-d, {entry.precision})",
            entry.state,
            str(entry.indexed),
            str(entry.failed),
            ocr,
        )
    out.print(table, soft_wrap=True)


@app.command()
@global_options
def create(
    ctx: typer.Context,
    name: NameArgument,
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            metavar="[PATH]...",
            help="Folders to index [default: those the active collection was indexed from]",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", "-m", metavar="MODEL", help="Preset, hub id or local checkpoint dir [default: clip]"
        ),
    ] = None,
    quiet: QuietOption = False,
) -> None:
    """Build collection NAME with MODEL beside the active one, which keeps answering searches. It
    reuses the active collection's folders, OCR setting and the words OCR read; only the embedding
    runs again. Interrupted, it resumes when run again. Then: `pixseek collections activate NAME`."""
    from pixseek.library import Library

    with user_errors():
        library = Library(settings(ctx, collection=name, model=model))
        with library:
            quiet_model_loading()
            plan = library.plan_build(library.load_encoder(), [Path(p) for p in paths or ()])
            progress, on_progress = progress_bar(not quiet, label=f"building {name}")
            try:
                with progress:
                    report = library.build(plan, on_progress)
            except KeyboardInterrupt:
                err.print(f"interrupted: run the same command again to resume building {name}")
                raise typer.Exit(130) from None
    if not quiet:
        print_report(err, report, f" [{plan.encoder.model_id}]")
        if report.text_reused and plan.donor is not None:
            err.print(f"{plural(report.text_reused, 'OCR reading')} reused from {plan.donor.name}")
        err.print(f"built {name}: `pixseek collections activate {name}` to use it")


@app.command()
@global_options
def activate(ctx: typer.Context, name: NameArgument) -> None:
    """Make NAME the collection every command and running server uses when none is named (atomic:
    a server answers each search from the old collection or the new one, never neither)."""
    from pixseek.library import Library

    with user_errors(), Library(settings(ctx)) as library:
        library.activate(name)
    err.print(f"active collection: {name}")


@app.command("rm")
@global_options
def remove(
    ctx: typer.Context,
    name: NameArgument,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation")] = False,
) -> None:
    """Delete collection NAME and its index (image files stay); the active one is refused."""
    from pixseek.library import Library

    with user_errors(), Library(settings(ctx)) as library:
        library.check_removable(name)
        if not yes and not typer.confirm(f"delete collection {name!r} and its index?", err=True):
            raise typer.Exit(1)
        library.remove_collection(name)
    err.print(f"removed {name}")
