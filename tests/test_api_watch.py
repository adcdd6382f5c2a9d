"""``pixseek serve --watch``: the server keeps its roots indexed, reports the watcher in /status,
and routes POST /index through the watcher (one writer per collection)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from fastapi.testclient import TestClient

from pixseek.api.app import create_app
from pixseek.api.config import ServerSettings


def wait_until(condition, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_serve_with_watch_indexes_changes_and_rescans_on_request(
    tmp_path: Path, clip_dir: Path, photos: Path
) -> None:
    settings = ServerSettings(
        data_dir=tmp_path / "data",
        model=str(clip_dir),
        precision="fp32",
        device="cpu",
        batch_size=8,
        library_roots=[photos],
        watch=True,
    )
    files = [p for p in photos.rglob("*") if p.is_file()]
    with TestClient(create_app(settings)) as client:
        status = wait_until(
            lambda: (s := client.get("/status").json())["watcher"]["phase"] == "watching" and s
        )
        watched = status["watcher"]["roots"]
        assert [root["path"] for root in watched] == ["photos"] and watched[0]["mode"] != "starting"
        indexed = status["collection"]["indexed"]
        assert indexed + status["collection"]["failed"] == len(files)

        new = photos / "outdoor" / "new-cat.png"
        shutil.copy(next(photos.rglob("chelsea.png")), new)
        new.write_bytes(new.read_bytes() + b"\0")  # different content: a new vector, not a copy
        wait_until(lambda: client.get("/status").json()["collection"]["indexed"] == indexed + 1)
        hits = client.post(
            "/search/image", files={"file": ("q.png", new.read_bytes(), "image/png")}, data={"k": "2"}
        ).json()["results"]
        assert "outdoor/new-cat.png" in [hit["image"]["path"] for hit in hits]

        job = client.post("/index", json={"path": "photos/indoor"}).json()
        assert job["paths"] == ["photos/indoor"]
        finished = wait_until(lambda: (j := client.get(f"/jobs/{job['id']}").json())["state"] == "done" and j)
        assert finished["embedded"] == 0 and finished["error"] is None  # nothing changed in indoor/
        assert client.get("/status").json()["watcher"]["last_error"] is None
