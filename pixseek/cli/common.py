"""What every command shares: the consoles, settings from options, one-line errors, progress bars.

Only light modules are imported here (Typer, rich, the settings): ``pixseek --help`` and commands
that never load a model must not pay for importing torch.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from pixseek.config import Settings
from pixseek.errors import PixseekError

# Messages carry user data (paths with brackets, model ids): never interpret them as rich markup.
out = Console(markup=False)
err = Console(stderr=True, markup=False)

# Options that every command takes, before the command name (`pixseek -c photos search ...`) or
# after it (`pixseek search ... -c photos`): users type them wherever they remember them.
GLOBAL_OPTIONS: dict[str, Any] = {
    "data_dir": Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            metavar="DIR",
            help="Where the database and indexes live [env PIXSEEK_DATA_DIR; default: the XDG data dir, "
            "~/.local/share/pixseek]",
        ),
    ],
    "database_url": Annotated[
        str | None,
        typer.Option(
            "--database-url",
            metavar="URL",
            help="SQLAlchemy URL, e.g. postgresql+psycopg://host/db [env PIXSEEK_DATABASE_URL; default: "
            "SQLite in the data dir]",
        ),
    ],
    "collection": Annotated[
        str | None,
        typer.Option(
            "--collection",
            "-c",
            metavar="NAME",
            help="Collection to use [env PIXSEEK_COLLECTION; default: default]",
        ),
    ],
    "verbose": Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens")],
}

Command = TypeVar("Command", bound=Callable[..., Any])


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        force=True,
    )
    # The hub client's download bars would interleave with pixseek's own progress bars.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def quiet_model_loading() -> None:
    """Checkpoint-loading chatter and transformers' own progress bars are not for users. Called by
    the commands that load a model, just before. transformers is not imported for it (a run with a
    cached compiled image tower never imports it, and that costs seconds): until it is imported,
    its environment variables say the same (the progress bars follow HF_HUB_DISABLE_PROGRESS_BARS)."""
    transformers = sys.modules.get("transformers")
    if transformers is None:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        return
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def _evaluated(annotation: Any, namespace: dict[str, Any]) -> Any:
    """Typer reads annotations as objects. A grouped parameter's type may be imported for type
    checking only: it stays a string until the group that builds it hides it from Typer."""
    if not isinstance(annotation, str):
        return annotation
    try:
        return eval(annotation, namespace)
    except NameError:
        return annotation


def with_parameters(
    command: Command, extra: dict[str, tuple[Any, Any]], prepare: Callable[[dict[str, Any]], None]
) -> Command:
    """``command`` with the parameters ``extra`` (name -> (Annotated option, default)) added to what
    Typer sees; ``prepare`` takes the call's keyword arguments and turns the added ones into what the
    command expects (popping them, setting others). How one option set serves several commands."""
    signature = inspect.signature(command)
    hidden = set(getattr(command, "_grouped", ())) & set(signature.parameters)
    namespace = vars(inspect.getmodule(inspect.unwrap(command)))
    params = [
        p.replace(annotation=_evaluated(p.annotation, namespace))
        for name, p in signature.parameters.items()
        if name not in hidden
    ]
    params += [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        for name, (annotation, default) in extra.items()
    ]

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        prepare(kwargs)
        return command(*args, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {
        **{k: v for k, v in command.__annotations__.items() if k not in hidden},
        **{name: annotation for name, (annotation, _) in extra.items()},
    }
    return wrapper  # type: ignore[return-value]


def global_options(command: Command) -> Command:
    """Give ``command`` the global options too, so that they also work after the command name;
    a value given there wins over one given before it."""

    def prepare(kwargs: dict[str, Any]) -> None:
        ctx: typer.Context = kwargs["ctx"]
        given = {name: kwargs.pop(name) for name in GLOBAL_OPTIONS}
        if given.pop("verbose"):
            configure_logging(True)
        ctx.obj = {**(ctx.obj or {}), **{k: v for k, v in given.items() if v is not None}}

    extra = {name: (option, False if name == "verbose" else None) for name, option in GLOBAL_OPTIONS.items()}
    return with_parameters(command, extra, prepare)


def option_group(parameter: str, spec: dict[str, tuple[Any, Any]], build: Callable[..., Any]):
    """Decorator: add the options of ``spec`` to a command and hand it ``build(**their values)`` as
    its parameter ``parameter`` (which Typer then never sees)."""

    def decorate(command: Command) -> Command:
        command._grouped = (*getattr(command, "_grouped", ()), parameter)  # type: ignore[attr-defined]

        def prepare(kwargs: dict[str, Any]) -> None:
            kwargs[parameter] = build(**{name: kwargs.pop(name) for name in spec})

        return with_parameters(command, spec, prepare)

    return decorate


def settings(ctx: typer.Context, **overrides: Any) -> Settings:
    """Settings from the environment, then the global options, then the command's own options."""
    values = {**(ctx.obj or {}), **{k: v for k, v in overrides.items() if v is not None}}
    return Settings(**values)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Errors a user can fix print as one line with exit code 2, never as a traceback."""
    try:
        yield
    except ValidationError as error:  # a bad option value or PIXSEEK_* environment variable
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        fail(f"invalid setting: {problems}")
    except PermissionError as error:
        fail(f"permission denied: {error.filename or error}")
    except (PixseekError, FileNotFoundError, NotADirectoryError, ValueError) as error:
        fail(str(error))


def fail(message: str) -> None:
    """End the command with ``message`` as one line on stderr and exit code 2."""
    # soft_wrap: one line for the terminal to fold, not hard newlines at 80 columns in a log
    err.print(f"error: {message}", style="red", soft_wrap=True)
    raise typer.Exit(2)


def plural(count: int, noun: str, many: str | None = None) -> str:
    """'1 image', '2 images', '1 copy reused'... (``many``: the irregular plural)."""
    return f"{count} {noun if count == 1 else many or noun + 's'}"


def human_bytes(size: float) -> str:
    """1536 -> '1.5 KB': sizes a user reads at a glance, never '0.0 MB'."""
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def progress_bar(show: bool, label: str = "indexing") -> tuple[Progress, Callable[[int, int], None]]:
    """A progress bar on stderr, and the (done, total) callback that drives it."""
    progress = Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=err,
        disable=not show,
    )
    task = progress.add_task(label, total=None, rate="")

    def on_progress(done: int, total: int) -> None:
        speed = progress.tasks[0].speed
        progress.update(
            task, completed=done, total=total, visible=True, rate=f"{speed:.1f} img/s" if speed else ""
        )

    return progress, on_progress


def print_reasons(console: Console, label: str, items: list[tuple[str, str]], more: str = "") -> None:
    """The first 20 (path, reason) pairs, then how many more there are."""
    for path, reason in items[:20]:
        console.print(f"  {label}: {path}: {reason}", soft_wrap=True)
    if len(items) > 20:
        console.print(f"  ... and {len(items) - 20} more{more}", soft_wrap=True)
