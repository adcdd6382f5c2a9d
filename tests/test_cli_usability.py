"""What a new user meets in the first hour (issue 12): options where they type them, the
collection's own model by default, readable help and output, a fast start, one-line errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli_runner import cli, runner
from pixseek.api.config import ServerSettings
from pixseek.cli import app
from pixseek.cli.serving import _with_default_roots

COMMANDS = ("index", "watch", "search", "status", "rm", "reindex", "drop", "serve", "eval", "train")


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private data dir and NO model setting: commands must find the collection's own model."""
    monkeypatch.setenv("PIXSEEK_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PIXSEEK_PRECISION", "fp32")
    monkeypatch.delenv("PIXSEEK_MODEL", raising=False)
    return tmp_path / "data"


def test_global_options_work_after_the_command_too(env: Path, clip_dir: Path, photos: Path) -> None:
    cli("index", photos / "indoor", "--model", clip_dir, "-c", "multi", "--json")
    assert json.loads(cli("search", "a cat", "-k", "2", "--json", "-c", "multi"))
    (status,) = json.loads(cli("status", "--collection", "multi", "--json"))["collections"]
    assert status["collection"] == "multi"
    # After the command wins over before it; the data dir works in both places.
    other = env.parent / "other-data"
    cli("--data-dir", env, "status", "--data-dir", other)
    assert json.loads(cli("status", "--json", "--data-dir", other))["collections"] == []
    assert "no collection 'default'" in cli("-c", "multi", "search", "x", "-c", "default", code=2)


def test_every_command_defaults_to_the_collections_model(env: Path, clip_dir: Path, photos: Path) -> None:
    cli("index", photos / "indoor", "--model", clip_dir)
    # Without --model a second run uses the collection's model, not the `clip` preset (which is
    # not even loadable offline): it indexes the new folder.
    report = json.loads(cli("index", photos / "outdoor", "--json"))
    assert report["embedded"] > 0
    assert json.loads(cli("search", "a cat", "-k", "1", "--json"))


def test_help_names_values_not_python_types() -> None:
    for command in COMMANDS:
        text = cli(command, "--help")
        assert not re.search(r"<(list\[|str>|int|float|bool|Path|datetime)", text), (command, text)
        assert "{" not in text.split("\n")[0], (command, text.split("\n")[0])
        assert "--collection" in text and "--data-dir" in text, command
    assert "index [OPTIONS] PATH...\n" in cli("index", "--help")
    assert "search [OPTIONS] [QUERY]\n" in cli("search", "--help")


def test_output_speaks_english(env: Path, clip_dir: Path, photos: Path) -> None:
    chelsea = next(photos.rglob("chelsea.png"))
    (photos / "copy").mkdir()
    (photos / "copy" / "chelsea again.png").write_bytes(chelsea.read_bytes())
    summary = runner.invoke(app, ["index", str(photos), "--model", str(clip_dir)]).output
    assert "1 copy reused" in summary, summary
    assert "removed 1 image;" in cli("rm", photos / "copy" / "chelsea again.png")
    status = cli("status")
    assert "index: exact search (IDMap2,Flat)" in status and " KB in " in status, status
    assert "0.0 MB" not in status and f"indexed from: {photos}" in status
    rebuilt = cli("reindex", "--rebuild")
    assert "{}" not in rebuilt and "exact search" in rebuilt
    table = cli("search", "a cat", "-k", "3")
    assert "pixels" in table.split("\n")[0] and "cosine" in table.split("\n")[0]


def test_an_unusable_data_dir_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("PIXSEEK_DATA_DIR", str(blocker / "data"))
    for args in (["status"], ["search", "a cat"], ["rm", str(tmp_path)]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert "cannot create the data directory" in result.output and "--data-dir" in result.output
        assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


def _run_in_fresh_python(code: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("args", [["--help"], ["status"], ["rm", "--help"]])
def test_commands_that_run_no_model_never_import_torch(tmp_path: Path, args: list[str]) -> None:
    """`pixseek --help` took ~5 s, 2.5x `import torch`: heavy modules load only where needed."""
    code = f"""
import contextlib, io, json, os, sys, time
os.environ["PIXSEEK_DATA_DIR"] = {str(tmp_path / "data")!r}
started = time.perf_counter()
from pixseek.cli import app
with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
    app({args!r})
heavy = sorted(m for m in ("torch", "transformers", "ray", "fastapi", "skimage") if m in sys.modules)
print(json.dumps({{"heavy": heavy, "seconds": time.perf_counter() - started}}))
"""
    result = _run_in_fresh_python(code)
    assert result["heavy"] == [], result


def test_serve_defaults_to_the_folders_the_collection_was_indexed_from(
    env: Path, clip_dir: Path, photos: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli("index", photos / "indoor", "--model", clip_dir)
    served = _with_default_roots(ServerSettings(data_dir=env))
    assert served.library_roots == [photos / "indoor"]
    assert "indexed from" in capsys.readouterr().err
    explicit = _with_default_roots(ServerSettings(data_dir=env, library_roots=[photos]))
    assert explicit.library_roots == [photos]
    nothing = _with_default_roots(ServerSettings(data_dir=env, collection="empty"))
    assert nothing.library_roots == [] and "nothing is served" in capsys.readouterr().err


def test_help_is_fast(tmp_path: Path) -> None:
    """A generous bound (CI machines are shared): the import alone of torch takes ~1.5 s here."""
    environment = {**os.environ, "PIXSEEK_DATA_DIR": str(tmp_path)}
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pixseek.cli", "--help"], env=environment, capture_output=True, check=True
    )
    assert time.perf_counter() - started < 5.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["index", "--bogus", "x"], "No such option: --bogus"),
        (["search", "-k", "many", "x"], "Invalid value for '-k'"),
        (["nosuch"], "No such command 'nosuch'"),
        (["index"], "Missing argument 'PATH'"),
    ],
)
def test_usage_mistakes_are_one_line(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and message in result.output and "--help" in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def _pixseek_executable(tmp_path: Path, args: list[str], prelude: str = "") -> subprocess.CompletedProcess:
    """``pixseek ARGS`` as the installed entry point runs it (``pixseek.cli:main``), output piped."""
    code = f"import sys\n{prelude}\nsys.argv = ['pixseek', *{args!r}]\nfrom pixseek.cli import main\nmain()\n"
    environment = {**os.environ, "PIXSEEK_DATA_DIR": str(tmp_path)}
    command = [sys.executable, "-c", code]
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120)


def test_the_executable_skips_teardown_but_keeps_output_status_and_exit_handlers(tmp_path: Path) -> None:
    """Leaving without the interpreter's teardown (pixseek.cli.fast_exit) must lose nothing a user sees."""
    on_exit = "import atexit\natexit.register(lambda: print('exit handler ran', file=sys.stderr))"
    listed = _pixseek_executable(tmp_path, ["--help"], on_exit)
    # Piped stdout is block-buffered: without the flush before os._exit the help would vanish.
    assert listed.returncode == 0 and listed.stdout.rstrip().splitlines()[-1].split()[0] == "collections"
    assert "exit handler ran" in listed.stderr
    mistake = _pixseek_executable(tmp_path, ["search", "-k", "many", "x"], on_exit)
    assert mistake.returncode == 2 and "Invalid value for '-k'" in mistake.stderr
    assert "exit handler ran" in mistake.stderr


def test_the_executable_still_waits_for_a_thread_that_is_running(tmp_path: Path) -> None:
    """A non-daemon thread still at work keeps the interpreter's normal exit, which waits for it."""
    late_thread = (
        "import threading, time\n"
        "threading.Thread(target=lambda: (time.sleep(0.5), print('thread finished', flush=True))).start()"
    )
    done = _pixseek_executable(tmp_path, ["--help"], late_thread)
    assert done.returncode == 0 and "thread finished" in done.stdout
