"""Outages a user meets in production, as the CLI and the watcher see them: the database lost in the
middle of a run, and no model hub. Each must be one line on stderr (exit 2) and recoverable by running
the same command again, or, for the watcher, by itself within seconds of the database coming back.

PostgreSQL outages go through :class:`db_proxy.TcpProxy`, never by stopping the shared server.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from test_watch import Watching, make_image, wait_until
from typer.testing import CliRunner

from db_proxy import TcpProxy, proxy_to
from pixseek.cli import app
from pixseek.config import Settings
from pixseek.embedding import load_encoder
from pixseek.embedding.checkpoint import ModelLoadError
from pixseek.library import Library
from pixseek.store import database
from pixseek.store.database import DatabaseError
from pixseek.store.repository import Store
from test_indexer import assert_consistent

POSTGRES = ("127.0.0.1", 5432)
# A run that asks an unreachable hub retries each file for ~30 s; one that does not takes the
# start-up and the (tiny) model load: 4-9 s on a quiet 2-core machine, up to 17 s while the rest
# of the suite shares it. The bound sits between the two.
NO_HUB_SECONDS = 25
UNREACHABLE_HUB = "http://127.0.0.1:9"  # the discard port: nothing listens, nothing leaves the machine
runner = CliRunner()  # no COLUMNS: a message must stay one line at the default 80 columns


def _with_password(url: str, password: str) -> str:
    """``url`` with a password (trust auth ignores it): the message must not show it."""
    return make_url(url).set(password=password).render_as_string(hide_password=False)


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_database_lost_mid_run_is_one_line_and_the_same_command_resumes(
    database_url: str, photos: Path, clip_dir: Path, tmp_path: Path
) -> None:
    files = sorted(str(path) for path in photos.rglob("*") if path.is_file())
    with proxy_to(POSTGRES) as proxy:
        url = _with_password(proxy.url(database_url), "s3cret")
        command = [
            *("--data-dir", str(tmp_path / "data"), "--database-url", url),
            *("index", str(photos), "--model", str(clip_dir), "--batch-size", "4"),
            *("--precision", "fp32", "--device", "cpu", "--json"),
        ]
        proxy.cut_at(b"INSERT INTO images", 3)  # two batches are saved, the third one is lost
        lost = runner.invoke(app, command)
        assert proxy.cut_event.is_set(), f"the run ended before the cut: {lost.output}"
        assert lost.exit_code == 2, lost.output
        assert "Traceback" not in lost.output
        lines = lost.stderr.strip().splitlines()
        assert len(lines) == 1, lost.stderr
        line = lines[0]
        assert make_url(url).render_as_string(hide_password=True) in line and "s3cret" not in line
        assert "check that it is running, then run the same command again" in line

        proxy.restore()
        resumed = runner.invoke(app, command)
        assert resumed.exit_code == 0, resumed.output
        summary = json.loads(resumed.stdout)
        assert summary["unchanged"] >= 8, "the batches saved before the cut are kept"
        assert summary["unchanged"] + summary["embedded"] + len(summary["failed"]) == len(files)

    library = Library(Settings(data_dir=tmp_path / "data", database_url=database_url, model=str(clip_dir)))
    try:
        collection = library.collection()
        assert sorted(library.store.known_files(collection.id, [str(photos)])) == files
        stats = library.store.stats(collection.id)
        assert stats.indexed + stats.failed == len(files), "every file has exactly one row"
        assert_consistent(library)
    finally:
        library.close()


@pytest.fixture
def encoder(clip_dir: Path):
    return load_encoder(str(clip_dir), device="cpu", precision="fp32")


@pytest.fixture
def proxied(database_url: str, settings: Settings) -> Iterator[tuple[Library, TcpProxy]]:
    """A library whose PostgreSQL database is behind a proxy the test can cut."""
    with proxy_to(POSTGRES) as proxy:
        library = Library(settings.model_copy(update={"database_url": proxy.url(database_url)}))
        try:
            yield library, proxy
        finally:
            library.close()


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_watcher_catches_up_within_seconds_of_the_database_coming_back(
    proxied: tuple[Library, TcpProxy], encoder, tmp_path: Path
) -> None:
    """The back-off is short (0.5 s doubling) so that ~8 s of outage is many failed tries: a delay
    that grows per try would reach 16 s, and the files would wait for it after the database is back."""
    library, proxy = proxied
    root = tmp_path / "photos"
    first = make_image(root / "first.png", seed=1)
    with Watching(library, encoder, [root], retry_delay=0.5) as watching:
        watching.wait_for({first: None}, "the initial reconcile")
        proxy.cut()
        cut_at = time.monotonic()
        added = [make_image(root / f"during_{i}.png", seed=10 + i) for i in range(3)]
        wait_until(lambda: watching.watcher.state().database == "unreachable", "the outage to be seen")
        state = watching.watcher.state()
        assert "the database" in state.last_error and "is unavailable" in state.last_error
        assert state.pending >= 1, "the changes are kept for a retry"
        time.sleep(4)
        added.append(make_image(root / "late.png", seed=20))  # settles and fails while still down
        time.sleep(max(0.0, cut_at + 8 - time.monotonic()))

        proxy.restore()
        back_at = time.monotonic()
        watching.wait_for(dict.fromkeys([first, *added]), "the files added during the outage")
        caught_up = time.monotonic() - back_at
        assert caught_up < 3, f"indexed {caught_up:.1f}s after the database was back"
        watching.idle()
        state = watching.watcher.state()
        assert state.database == "ok" and "is unavailable" in state.last_error, "the error stays readable"
    assert watching.encoder.images_embedded == 5, "each file embedded once"
    assert_consistent(library)


def test_a_server_that_never_answers_fails_within_the_connect_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A host that accepts TCP but never answers (a hung server, a half-open firewall): libpq alone
    would wait forever, so neither the first open nor a watcher's probe would ever return."""
    monkeypatch.setattr(database, "CONNECT_TIMEOUT_SECONDS", 1)
    silent = socket.create_server(("127.0.0.1", 0))  # the kernel completes handshakes; nobody talks
    outcome: list[BaseException] = []

    def open_store() -> None:
        try:
            Store.open(f"postgresql+psycopg://postgres@127.0.0.1:{silent.getsockname()[1]}/x")
        except BaseException as error:
            outcome.append(error)

    try:
        thread = threading.Thread(target=open_store, daemon=True)
        thread.start()
        thread.join(10)
        assert not thread.is_alive(), "still connecting after 10 s"
    finally:
        silent.close()
    (error,) = outcome
    assert isinstance(error, DatabaseError) and "cannot open the database" in str(error)


def _index_without_hub(tmp_path: Path, model: str) -> tuple[subprocess.CompletedProcess, float]:
    """``pixseek index`` as a user without network runs it: hub mode on (no HF_HUB_OFFLINE), an
    empty model cache, and a hub endpoint that refuses connections."""
    (tmp_path / "empty").mkdir(exist_ok=True)
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE") and not key.lower().endswith("_proxy")
    }
    environment.update(
        HF_ENDPOINT=UNREACHABLE_HUB,
        HF_HOME=str(tmp_path / "hf-home"),
        PIXSEEK_DATA_DIR=str(tmp_path / "data"),
    )
    command = [sys.executable, "-m", "pixseek.cli", "index", str(tmp_path / "empty"), "--model", model]
    started = time.monotonic()
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120)
    return result, time.monotonic() - started


def _assert_one_line_error(result: subprocess.CompletedProcess, seconds: float) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "Retry" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert seconds < NO_HUB_SECONDS, f"took {seconds:.1f}s"
    return lines[0]


@pytest.mark.parametrize("path", ["/no/such/dir", "./no-such-dir", "~/no/such/dir", "models/mine/v2"])
def test_a_missing_model_folder_is_named_as_such(path: str) -> None:
    with pytest.raises(ModelLoadError, match=r"^no model folder at "):
        load_encoder(path)


@pytest.mark.slow
def test_model_path_that_does_not_exist_is_one_line(tmp_path: Path) -> None:
    result, seconds = _index_without_hub(tmp_path, "/no/such/dir")
    line = _assert_one_line_error(result, seconds)
    assert line == "error: no model folder at /no/such/dir"


@pytest.mark.slow
def test_hub_model_without_a_reachable_hub_fails_at_once_in_one_line(tmp_path: Path) -> None:
    result, seconds = _index_without_hub(tmp_path, "someorg/some-model")
    line = _assert_one_line_error(result, seconds)
    assert "'someorg/some-model' is neither a folder here nor in the local cache" in line
    assert f"the model hub {UNREACHABLE_HUB} is unreachable" in line
    assert "--model <local dir>" in line


@pytest.mark.slow
def test_cached_hub_model_loads_without_asking_the_hub(tmp_path: Path, clip_dir: Path) -> None:
    """A hub id in the local cache needs no hub: before, each file's request was retried ~30 s."""
    cached = tmp_path / "hf-home" / "hub" / "models--someorg--tiny-clip"  # huggingface_hub's layout
    (cached / "refs").mkdir(parents=True)
    (cached / "refs" / "main").write_text("0123456789abcdef")
    shutil.copytree(clip_dir, cached / "snapshots" / "0123456789abcdef")
    result, seconds = _index_without_hub(tmp_path, "someorg/tiny-clip")
    assert result.returncode == 0, result.stderr
    assert "Retry" not in result.stderr and "Traceback" not in result.stderr
    assert seconds < NO_HUB_SECONDS, f"took {seconds:.1f}s"
