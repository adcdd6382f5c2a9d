"""The command line as users run it: in-process for the commands, a real process for kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_runner import cli, runner
from pixseek.cli import app
from pixseek.config import Settings
from pixseek.library import Library


def test_index_search_status_rm_reindex(cli_env: Path, photos: Path) -> None:
    summary = json.loads(cli("index", str(photos), "--json"))
    assert summary["embedded"] >= 25 and summary["failed"]
    hits = json.loads(cli("search", "a cat on a sofa", "-k", "4", "--json"))
    assert len(hits) == 4 and {"id", "score", "path", "width", "taken_at"} <= set(hits[0])
    chelsea = next(photos.rglob("chelsea.png"))
    by_image = json.loads(cli("search", "--image", str(chelsea), "-k", "1", "--json"))
    assert by_image[0]["path"] == str(chelsea)
    like = json.loads(cli("search", "--like", str(by_image[0]["id"]), "-k", "3", "--json"))
    assert len(like) == 3 and by_image[0]["id"] not in [hit["id"] for hit in like]
    table = cli("search", "a cat", "-k", "2", "--folder", str(photos / "indoor"))
    assert str(photos / "indoor") in table

    status = json.loads(cli("status", "--json"))
    (collection,) = status["collections"]
    assert collection["indexed"] == summary["embedded"] and collection["failed"] == len(summary["failed"])
    assert collection["dim"] == 16 and collection["precision"] == "fp32" and collection["index_bytes"] > 0

    cli("rm", str(photos / "indoor"))
    remaining = json.loads(cli("status", "--json"))["collections"][0]["indexed"]
    assert 0 < remaining < collection["indexed"]
    cli("reindex", "--rebuild")
    after = json.loads(cli("search", "a cat", "-k", "50", "--json"))
    assert len(after) == remaining and not any("/indoor/" in hit["path"] for hit in after)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", "a cat"], "no collection 'default' yet"),
        (["index", "/does/not/exist"], "no such file or folder"),
        (["index", ".", "--model", "openai/clip-vit-base-patch32"], "--model <local dir>"),
        (["search"], "give a text query, --image PATH"),
        (["search", "a cat", "--like", "1"], "give at most one of"),
        (["-c", "bad/name", "status"], "invalid collection name"),
    ],
)
def test_user_errors_are_one_line_without_traceback(cli_env: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_help_explains_commands(cli_env: Path) -> None:
    top = cli("--help")
    for command in ("index", "search", "status", "rm", "reindex", "drop"):
        assert command in top
    assert "altclip-m9" in cli("index", "--help")
    assert "--like" in cli("search", "--help")


def _make_folder(root: Path, count: int) -> None:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for i in range(count):
        pixels = rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"img_{i:04d}.png")


@pytest.mark.slow
def test_kill_9_during_indexing_then_resume_is_consistent(tmp_path: Path, clip_dir: Path) -> None:
    photos = tmp_path / "many"
    _make_folder(photos, 600)
    environment = {
        **os.environ,
        "PIXSEEK_DATA_DIR": str(tmp_path / "data"),
        "PIXSEEK_MODEL": str(clip_dir),
        "PIXSEEK_BATCH_SIZE": "4",
        "PIXSEEK_DECODE_WORKERS": "1",
        "PIXSEEK_PRECISION": "fp32",
    }
    command = [sys.executable, "-m", "pixseek.cli", "index", str(photos), "--quiet"]
    process = subprocess.Popen(command, env=environment)
    library = Library(Settings(data_dir=tmp_path / "data"))
    deadline = time.monotonic() + 120
    committed = 0
    while time.monotonic() < deadline and process.poll() is None:
        collection = (
            library.store.collection("default") if (tmp_path / "data" / "pixseek.db").exists() else None
        )
        committed = library.store.stats(collection.id).indexed if collection else 0
        if committed >= 40:
            break
        time.sleep(0.02)
    assert process.poll() is None, "the run finished before it could be killed; make the folder bigger"
    process.send_signal(signal.SIGKILL)
    process.wait()
    collection = library.store.collection("default")
    interrupted_count = library.store.stats(collection.id).indexed
    assert 40 <= interrupted_count < 600

    resumed = subprocess.run([*command[:-1], "--json"], env=environment, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(resumed.stdout)
    assert report["unchanged"] >= interrupted_count and report["embedded"] == 600 - report["unchanged"]
    library.close()
    library = Library(Settings(data_dir=tmp_path / "data"))
    collection = library.collection()
    assert library.store.stats(collection.id).indexed == 600
    in_sql = sorted(library.store.indexed_ids(collection.id).tolist())
    assert sorted(library.vectors(collection).ids().tolist()) == in_sql
    library.close()
