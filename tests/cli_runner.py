"""Running the `pixseek` command in-process, as the CLI tests do: wide enough that table cells and
messages do not fold, and a helper that checks the exit code and returns what was printed."""

from __future__ import annotations

from typer.testing import CliRunner

from pixseek.cli import app

runner = CliRunner(env={"COLUMNS": "300"})


def cli(*args: object, code: int = 0) -> str:
    """Run ``pixseek ARGS...``; assert it exits with ``code``; return stdout and stderr."""
    result = runner.invoke(app, [str(arg) for arg in args])
    assert result.exit_code == code, result.output
    return result.output
