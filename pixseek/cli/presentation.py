"""How Typer shows pixseek's arguments and usage errors.

Typer 0.29 prints every argument with its Python type (``PATH <list[Path]>``), a required one in
braces (``{PATH}...``), and a usage error as four lines (usage, hint, blank, error). pixseek's
metavars already say what goes where, and a mistake is one line on stderr with exit code 2, as
for every other error the user can fix. Both are class attributes of Typer's own classes, set once
when the CLI is imported.
"""

from __future__ import annotations

from typing import IO, Any

import typer.core
from typer._click.exceptions import UsageError
from typer._click.utils import echo


def _argument_usage(argument: typer.core.TyperArgument) -> str:
    name = argument.display_name_raw if argument.required else f"[{argument.display_name_raw}]"
    return name + ("..." if argument.nargs != 1 else "")


def _one_line(error: UsageError, file: IO[Any] | None = None) -> None:
    hint = f"; see `{error.ctx.command_path} --help`" if error.ctx is not None else ""
    echo(f"error: {error.format_message().rstrip('.')}{hint}", file=file, err=file is None)


def present_like_pixseek() -> None:
    typer.core.TyperArgument.display_type_rich = lambda _argument, ctx: None  # type: ignore[method-assign,assignment]
    typer.core.TyperArgument._usage_display_name = _argument_usage  # type: ignore[method-assign,assignment]
    UsageError.show = _one_line  # type: ignore[method-assign,assignment]
