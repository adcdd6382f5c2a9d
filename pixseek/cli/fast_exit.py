"""Leave the process as soon as a command is done, without tearing the interpreter down.

A command that loaded the model has torch and transformers in memory, and the interpreter's
teardown (module clean-up, garbage collection of every object, the native libraries' destructors)
then costs about a second on a 2-core CPU: ``pixseek search`` took 11.5 s against 12.65 s (medians
of 5, AVX2 EPYC; docs/benchmarks.md). An index through the cached OpenVINO tower, which never
imports torch, showed no difference. Nothing is lost by skipping it once what teardown guarantees
has happened: the exit handlers (``atexit``: logging's flush, Ray's shutdown, multiprocessing's
children) run, and the standard streams are flushed. Where that is not enough (another non-daemon
thread still runs, whose end the interpreter would wait for, or a stream cannot be flushed, whose
error the interpreter would report), the normal exit runs instead.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Callable


def exit_code(code: str | int | None) -> int:
    """The status ``sys.exit(code)`` ends a process with; a message is written to stderr, as Python does."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def run_then_exit(command: Callable[[], object]) -> None:
    """Run ``command`` (a Typer app, which ends with ``SystemExit``) and end the process at once."""
    try:
        command()
        code: str | int | None = 0
    except SystemExit as ended:
        code = ended.code
    if _other_threads_running():
        sys.exit(code)
    status = exit_code(code)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        sys.exit(status)  # the interpreter reports a stream it cannot flush (e.g. a closed pipe)
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(status)


def _other_threads_running() -> bool:
    main = threading.main_thread()
    return any(t is not main and not t.daemon and t.is_alive() for t in threading.enumerate())
