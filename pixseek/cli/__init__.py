"""The ``pixseek`` command line: index folders, search them, inspect and maintain the store.

One module per group of commands (``indexing``, ``searching``, ``duplicates``, ``serving``,
``status``, ``learning``); options several commands share are defined once in ``options``, and what
every command needs (consoles, settings, one-line errors, progress bars) in ``common``. Commands parse,
call :class:`pixseek.library.Library`, and format; heavy modules are imported inside the commands
that need them, so ``pixseek --help`` and ``pixseek status`` start fast.
"""

from __future__ import annotations

import typer

from pixseek.cli import collections, duplicates, indexing, learning, searching, serving, status
from pixseek.cli.common import GLOBAL_OPTIONS, configure_logging, with_parameters
from pixseek.cli.fast_exit import run_then_exit
from pixseek.cli.indexing import sigterm_as_ctrl_c
from pixseek.cli.presentation import present_like_pixseek

present_like_pixseek()
app = typer.Typer(
    help="pixseek: semantic image search. Index photo folders, then search them by text or by image. "
    "The global options below also work after the command name.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts contain [brackets] and paths, not markup
)


def _main(ctx: typer.Context) -> None:
    """Options given before the command name, for every command."""


def _prepare(kwargs: dict) -> None:
    ctx: typer.Context = kwargs["ctx"]
    given = {name: kwargs.pop(name) for name in GLOBAL_OPTIONS}
    configure_logging(given.pop("verbose"))
    ctx.obj = {k: v for k, v in given.items() if v is not None}


app.callback()(
    with_parameters(
        _main,
        {name: (option, False if name == "verbose" else None) for name, option in GLOBAL_OPTIONS.items()},
        _prepare,
    )
)
for group in (indexing, searching, duplicates, status, serving, learning, collections):
    app.add_typer(group.app)

# Kept importable from here: the watcher tests stop a watch with SIGTERM through it.
_sigterm_as_ctrl_c = sigterm_as_ctrl_c


def main() -> None:
    """The ``pixseek`` executable: run the command, then leave without the interpreter's teardown."""
    run_then_exit(app)
