"""Collections beside each other: build B with another model while the server answers on A, then
activate B without a failed request; a build killed with SIGKILL leaves A serving and B resumable;
the refusals (a taken name, an unknown model, activating a collection still building, deleting the
active one) are 4xx over the API and one line with exit code 2 in the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from api_client import wait_for_job
from cli_runner import cli
from pixseek.api.app import create_app
from pixseek.api.config import ServerSettings
from pixseek.config import Settings
from pixseek.library import Library
from pixseek.store.index_folder import MANIFEST
from pixseek.store.repository import Store
from pixseek.store.vector_index import VectorIndex


def _wait_built(client: TestClient, name: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        (entry,) = [c for c in client.get("/collections").json() if c["name"] == name]
        if entry["build"] is not None and entry["build"]["state"] != "running":
            return entry
        time.sleep(0.05)
    raise AssertionError(f"collection {name} was not built in {timeout} s")


@pytest.fixture
def server(tmp_path: Path, clip_dir: Path, photos: Path) -> ServerSettings:
    return ServerSettings(
        data_dir=tmp_path / "data",
        model=str(clip_dir),
        precision="fp32",
        device="cpu",
        library_roots=[photos],
    )


def test_build_beside_the_active_collection_and_switch_without_a_failed_request(
    server: ServerSettings, dual_dir: Path
) -> None:
    with TestClient(create_app(server)) as client:
        assert wait_for_job(client, client.post("/index").json()["id"])["state"] == "done"
        (first,) = client.get("/collections").json()
        assert (first["name"], first["state"], first["active"]) == ("default", "ready", True)
        answered: list[tuple[int, str | None]] = []
        stop = threading.Event()

        def search_continuously() -> None:
            while not stop.is_set():
                response = client.post("/search", json={"query": "a cat", "k": 3})
                model = (
                    client.get("/status").json()["collection"]["model"]
                    if response.status_code == 200
                    else None
                )
                answered.append((response.status_code, model))

        searcher = threading.Thread(target=search_continuously)
        searcher.start()
        try:
            created = client.post("/collections", json={"name": "dual", "model": str(dual_dir)})
            assert created.status_code == 202 and created.json()["state"] == "building"
            refused = client.post("/collections/dual/activate")
            assert refused.status_code in (200, 409)  # 409 while building; it may already be done
            built = _wait_built(client, "dual")
            assert built["build"]["state"] == "done" and built["state"] == "ready", built
            assert built["indexed"] == first["indexed"] and not built["active"]
            before = len(answered)
            activated = client.post("/collections/dual/activate")
            assert activated.status_code == 200 and activated.json()["active"]
            deadline = time.monotonic() + 30
            while len(answered) < before + 3 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            stop.set()
            searcher.join(timeout=60)
        assert answered and all(status == 200 for status, _ in answered), answered[-5:]
        assert answered[-1][1] == str(dual_dir)  # the searches after the switch run on B's model
        status = client.get("/status").json()["collection"]
        assert (status["name"], status["model"]) == ("dual", str(dual_dir))
        named = client.post("/search", json={"query": "a cat", "collection": "default", "k": 2})
        assert named.status_code == 200 and len(named.json()["results"]) == 2  # A still searchable by name
        listed = {c["name"]: c["active"] for c in client.get("/collections").json()}
        assert listed == {"default": False, "dual": True}
        assert client.delete("/collections/default").status_code == 204
        assert [c["name"] for c in client.get("/collections").json()] == ["dual"]


def test_api_refusals_are_4xx_with_a_reason(server: ServerSettings, dual_dir: Path, clip_dir: Path) -> None:
    with TestClient(create_app(server)) as client:
        assert wait_for_job(client, client.post("/index").json()["id"])["state"] == "done"
        cases = [
            (
                client.post("/collections", json={"name": "default", "model": str(clip_dir)}),
                409,
                "already exists",
            ),
            (client.post("/collections", json={"name": "x", "model": "/no/such/model"}), 400, "no model"),
            (client.post("/collections", json={"name": "bad name", "model": str(dual_dir)}), 422, "name"),
            (client.post("/collections/nope/activate"), 404, "no collection"),
            (client.delete("/collections/default"), 409, "active"),
            (client.delete("/collections/nope"), 404, "no collection"),
        ]
        for response, status, reason in cases:
            assert response.status_code == status and reason in json.dumps(response.json()), response.json()
        assert [c["name"] for c in client.get("/collections").json()] == ["default"]  # nothing half-made


def _many_photos(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(folder / f"p{i:03d}.png")
    return folder


def test_a_killed_build_leaves_the_active_collection_serving_and_resumes(
    tmp_path: Path, clip_dir: Path, dual_dir: Path, cli_env: Path
) -> None:
    photos = _many_photos(tmp_path / "many", 400)
    cli("index", photos)
    environment = {
        **os.environ,
        "PIXSEEK_DATA_DIR": str(cli_env),
        "PIXSEEK_PRECISION": "fp32",
        "HF_HUB_OFFLINE": "1",
    }
    environment.pop("PIXSEEK_MODEL", None)
    build = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pixseek.cli",
            "collections",
            "create",
            "dual",
            "--model",
            str(dual_dir),
            "-q",
        ],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    store = Store.open(f"sqlite:///{cli_env / 'pixseek.db'}")
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            dual = store.collection("dual")
            if dual is not None and store.stats(dual.id).indexed >= 8:
                break
            assert build.poll() is None, build.stderr.read() if build.stderr else ""
            time.sleep(0.02)
        build.send_signal(signal.SIGKILL)
        build.wait(timeout=30)
        dual = store.collection("dual")
        assert dual is not None and dual.state == "building"
        done_before = store.stats(dual.id).indexed
        assert 8 <= done_before < 400
    finally:
        store.close()
    listing = json.loads(cli("collections", "list", "--json"))
    assert {(c["name"], c["state"], c["active"]) for c in listing} == {
        ("default", "ready", True),
        ("dual", "building", False),
    }
    assert "p0" in cli("search", "noise")  # the active collection answers throughout
    refused = cli("collections", "activate", "dual", code=2)
    assert "still building" in refused and len(refused.strip().splitlines()) == 1
    resumed = cli("collections", "create", "dual", "--model", dual_dir)
    assert f"{400 - done_before} embedded" in resumed and f"{done_before} unchanged" in resumed
    cli("collections", "activate", "dual")
    assert json.loads(cli("status", "--json"))["collections"][0]["collection"] == "default"
    with Library(Settings(data_dir=cli_env)) as library:
        assert library.collection_name == "dual" and library.collection().state == "ready"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["collections", "create", "default"], "already exists"),
        (["collections", "create", "x", "--model", "/no/such/model"], "no model"),
        (["collections", "create", "bad/name"], "invalid collection name"),
        (["collections", "activate", "nope"], "no collection 'nope'"),
        (["collections", "rm", "default", "--yes"], "is the active one"),
        (["collections", "rm", "nope", "--yes"], "no collection 'nope'"),
    ],
)
def test_cli_refusals_are_one_line_errors(cli_env: Path, photos: Path, args: list[str], message: str) -> None:
    cli("index", photos)
    output = cli(*args, code=2)
    assert message in output and len(output.strip().splitlines()) == 1, output


def test_eval_compares_two_collections_on_one_caption_set(
    tmp_path: Path, cli_env: Path, photos: Path, dual_dir: Path, clip_dir: Path
) -> None:
    cli("index", photos)
    cli("collections", "create", "dual", "--model", dual_dir, "-q")
    names = sorted(p.name for p in photos.rglob("*") if p.is_file())[:4]
    captions = tmp_path / "captions.jsonl"
    captions.write_text("\n".join(json.dumps({"image": n, "caption": f"photo {n}"}) for n in names))
    folder = tmp_path / "flat"
    folder.mkdir()
    for path in photos.rglob("*"):
        if path.name in names:
            (folder / path.name).write_bytes(path.read_bytes())
    reports = json.loads(cli("eval", captions, "--images", folder, "--compare", "default,dual", "--json"))
    assert list(reports) == [f"default ({clip_dir})", f"dual ({dual_dir})"]
    for report in reports.values():
        assert report["captions"] == 4 and report["text_to_image"]["first"]["queries"] == 4
    assert "--compare takes two or more" in cli(
        "eval", captions, "--images", folder, "--compare", "dual", code=2
    )
    assert "no collection 'nope'" in cli(
        "eval", captions, "--images", folder, "--compare", "dual,nope", code=2
    )


def test_a_build_in_a_reading_worker_still_saves_its_index(
    settings: Settings, photos: Path, dual_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With `serve --workers N` a build may run in a reader, whose saves are off; nobody else
    writes a collection being built, so its own process must save it."""
    with Library(settings) as first:
        first.indexer(first.load_encoder()).run([photos])
    monkeypatch.setattr(VectorIndex, "writes_allowed", lambda: False)  # a reading worker
    with Library(settings.model_copy(update={"collection": "dual", "model": str(dual_dir)})) as library:
        report = library.build(library.plan_build(library.load_encoder(), [photos]))
        assert report.embedded > 0 and library.collection().state == "ready"
        manifest = library.index_path("dual") / MANIFEST
    assert manifest.exists()
    default_manifest = settings.index_dir / "default" / MANIFEST
    saved = default_manifest.read_bytes()
    Image.new("RGB", (40, 30), "red").save(photos / "new.png")
    with Library(settings) as first:  # an ordinary run in the same reading worker saves nothing
        assert first.indexer(first.load_encoder()).run([photos]).embedded == 1
    assert default_manifest.read_bytes() == saved
