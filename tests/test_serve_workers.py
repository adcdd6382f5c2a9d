"""`pixseek serve --workers 2` as a real subprocess: one writer elected by a file lock, readers that
follow its changes through SQL's change log, and writing passed on when the writer is killed; and,
in-process, what those rest on: a reader's index following a writer's, and the lock.

Which worker answered is in the ``X-Pixseek-Worker`` (pid) and ``X-Pixseek-Role`` headers. Every
request opens a new connection, and requests go out in concurrent bursts, so that both worker
processes (which accept on one shared socket) answer some of them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
from PIL import Image

from pixseek.api.jobs import SharedJobManager
from pixseek.service.writer_lock import WriterLock
from pixseek.store.ann.plan import IndexPlan
from pixseek.store.ann.source import StoreVectors
from pixseek.store.index_options import IndexOptions
from pixseek.store.records import ChangeBatch, FileFacts
from pixseek.store.repository import Store
from pixseek.store.vector_index import VectorIndex
from pixseek.vocabulary import IndexKind

BURST = 6  # concurrent requests per round: enough that the other worker accepts some


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_image(path: Path, seed: int, side: int = 48) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 255, (side, side, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="PNG")
    return path


class Server:
    """Requests to the server on ``port``, each on a fresh connection."""

    def __init__(self, port: int, process: subprocess.Popen, log: Path):
        self.base = f"http://127.0.0.1:{port}"
        self.process = process
        self.log = log
        self.pool = ThreadPoolExecutor(BURST)

    def ask(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        return httpx.request(method, self.base + path, timeout=60, **kwargs)  # type: ignore[arg-type]

    def burst(self, method: str, path: str, **kwargs: object) -> list[tuple[float, httpx.Response]]:
        """BURST concurrent requests: (when each was sent, its response); failed connections left out
        (a worker being restarted)."""

        def one(_: int) -> tuple[float, httpx.Response] | None:
            sent = time.monotonic()
            try:
                return sent, self.ask(method, path, **kwargs)
            except httpx.TransportError:
                return None

        return [answer for answer in self.pool.map(one, range(BURST)) if answer is not None]

    def until(self, condition: Callable[[], object], what: str, timeout: float = 60) -> object:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the server exited:\n{self.log.read_text()[-3000:]}"
            found = condition()
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}:\n{self.log.read_text()[-3000:]}")

    def workers(self) -> dict[int, str]:
        """The pids and roles of the workers that answered a burst of /health."""
        return {
            int(r.headers["x-pixseek-worker"]): r.headers["x-pixseek-role"]
            for _, r in self.burst("GET", "/health")
        }

    def index(self) -> dict:
        response = self.ask("POST", "/index")
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]

        def finished() -> dict | None:
            job = self.ask("GET", f"/jobs/{job_id}").json()
            return job if job["state"] in ("done", "failed") else None

        job = self.until(finished, f"job {job_id}", timeout=90)
        assert isinstance(job, dict) and job["state"] == "done", job
        return job


def paths_found(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {hit["image"]["path"] for hit in response.json()["results"]}


SEARCH = {"query": "a photo", "k": 100, "mode": "semantic"}  # the vector index alone: FAISS follows


def test_a_reader_follows_the_writer_through_the_change_log(tmp_path: Path, monkeypatch) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'db.sqlite'}")
    info = store.ensure_collection("c", model_id="m", fingerprint="f", dim=8, precision="fp32")
    path = tmp_path / "indexes" / "c"
    rng = np.random.default_rng(0)

    def open_index() -> VectorIndex:
        index = VectorIndex.load(path, 8, source=StoreVectors(store, info.id, 8), options=IndexOptions())
        index.reconcile(store, store.collection("c"))  # type: ignore[arg-type]
        return index

    writer = open_index()
    counter = iter(range(10_000))

    def write(added: int = 0, removed: list[int] | None = None) -> np.ndarray:
        vectors = rng.standard_normal((added, 8)).astype(np.float32)
        facts = [FileFacts(f"/p/{next(counter)}.jpg", 1, 1, None) for _ in range(added)]
        batch = ChangeBatch(indexed=list(zip(facts, vectors, strict=True)), deleted=removed or [])
        changes = store.apply(info.id, batch)
        writer.update(changes.added_ids, changes.added_vectors, changes.removed_ids, changes.generation)
        writer.save(path)
        return changes.added_ids

    first = write(40)
    reader = open_index()
    assert sorted(reader.ids()) == sorted(writer.ids()) == sorted(first)

    # From the log: no id-set comparison.
    with monkeypatch.context() as patched:
        patched.setattr(store, "indexed_ids", lambda *_: pytest.fail("compared id sets"))
        added = write(5)
        write(3, removed=[int(first[0]), int(added[0])])  # an id added and removed since: nothing
        assert reader.follow(store, info) == (7, 1)
        assert reader.follow(store, info) == (0, 0) and reader.generation == writer.generation
    assert sorted(reader.ids()) == sorted(store.indexed_ids(info.id))

    # The writer's new base is taken up (mapped), and the changes after it follow.
    writer.rebuild_base(IndexPlan(IndexKind.FLAT))
    write(2, removed=[int(first[1])])
    reader.follow(store, info)
    assert reader.base is not None and len(reader.base) == len(writer.base or [])
    assert reader.generation == writer.generation
    assert sorted(reader.ids()) == sorted(writer.ids()) == sorted(store.indexed_ids(info.id))
    query = rng.standard_normal((3, 8)).astype(np.float32)
    np.testing.assert_array_equal(reader.search(query, 10)[1], writer.search(query, 10)[1])

    # A log trimmed past the reader's generation: one id-set comparison instead.
    frozen = open_index()
    write(4, removed=[int(first[2])])
    assert store.trim_change_log(keep_for=timedelta(0)) > 0
    write(1)
    assert frozen.follow(store, info) == (5, 1)
    assert sorted(frozen.ids()) == sorted(store.indexed_ids(info.id))
    store.close()


def test_the_writer_lock_passes_when_its_holder_goes(tmp_path: Path) -> None:
    path = tmp_path / "serve.writer.lock"
    holder, other = WriterLock(path), WriterLock(path)
    assert holder.try_acquire() and holder.held
    assert not other.try_acquire()  # flock: a second open file description is refused
    holder.release()
    assert other.try_acquire()
    other.release()
    # kill -9 of the holder: the kernel drops its lock with its descriptors.
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from pathlib import Path; from pixseek.service.writer_lock import WriterLock; "
            f"assert WriterLock(Path({str(path)!r})).try_acquire(); print('held', flush=True); "
            "time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        assert not other.try_acquire()
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        assert other.try_acquire()
    finally:
        child.kill()
        child.wait()
        other.release()


def test_jobs_posted_to_any_worker_run_in_the_writer(tmp_path: Path) -> None:
    folder = tmp_path / "jobs"
    ran: list[list[str]] = []
    writing = {"now": False}

    def run_index(paths: list[str], progress) -> SimpleNamespace:
        progress(1, 1)
        ran.append(paths)
        return SimpleNamespace(embedded=1, copied=0, failed=[])

    reader = SharedJobManager(folder, lambda *_: pytest.fail("a reader ran a job"), lambda: False)
    writer = SharedJobManager(folder, run_index, lambda: writing["now"])
    try:
        job = reader.submit(["/photos"])
        time.sleep(0.5)
        assert reader.get(job.id).state == "queued" and not ran  # type: ignore[union-attr]
        # A job its dead writer left running: queued again once, then given up.
        for attempts, path in ((1, "/again"), (2, "/given-up")):
            orphan = reader.submit([path])
            orphan.state = "running"
            reader._write(orphan, attempts=attempts)
        writing["now"] = True  # elected
        deadline = time.monotonic() + 20
        while reader.active and time.monotonic() < deadline:
            time.sleep(0.05)
        states = {tuple(j.paths): (j.state, j.embedded) for j in reader.all()}
        assert states[("/photos",)] == ("done", 1) and states[("/again",)] == ("done", 1)
        assert states[("/given-up",)][0] == "failed" and sorted(ran) == [["/again"], ["/photos"]]
        assert reader.get("../../etc/passwd") is None
    finally:
        reader.close()
        writer.close()


@pytest.fixture
def server(tmp_path: Path, clip_dir: Path, photos: Path):
    port = free_port()
    environment = {
        **os.environ,
        "PIXSEEK_DATA_DIR": str(tmp_path / "data"),
        "PIXSEEK_MODEL": str(clip_dir),
        "PIXSEEK_PRECISION": "fp32",
        "PIXSEEK_DEVICE": "cpu",
        "PIXSEEK_BATCH_SIZE": "8",
        "PIXSEEK_DECODE_WORKERS": "1",
    }
    command = [sys.executable, "-m", "pixseek.cli", "serve", "--root", str(photos), "--port", str(port)]
    log = tmp_path / "serve.log"
    with open(log, "w") as stderr:
        process = subprocess.Popen([*command, "--workers", "2"], env=environment, stderr=stderr)
    running = Server(port, process, log)
    try:
        yield running
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        running.pool.shutdown()


@pytest.mark.slow
def test_two_workers_share_writes_and_pass_writing_on(server: Server, photos: Path) -> None:
    # Both workers up: one writer, one reader.
    seen: dict[int, str] = {}
    server.until(lambda: seen.update(server.workers()) or len(seen) == 2, "both workers", timeout=90)
    assert sorted(seen.values()) == ["reader", "writer"], seen

    # The API's basic calls through either worker.
    job = server.index()
    assert job["embedded"] > 0
    statuses = [response.json() for _, response in server.burst("GET", "/status")]
    indexed = statuses[0]["collection"]["indexed"]
    assert indexed == job["embedded"] and all(s["collection"]["indexed"] == indexed for s in statuses)
    server.until(
        lambda: all(len(paths_found(r)) == indexed for _, r in server.burst("POST", "/search", json=SEARCH)),
        "every worker to find every photo",
    )

    def written_and_found(name: str, seed: int) -> float:
        """Index a new file; the delay after the job was seen done until a reader found it, and
        no reader's answer to a search sent a second after that lacks it."""
        make_image(photos / name, seed)
        server.index()
        done = time.monotonic()
        first: list[float] = []
        late: list[bool] = []

        def read_by_readers() -> bool:
            for sent, response in server.burst("POST", "/search", json=SEARCH):
                if response.headers["x-pixseek-role"] != "reader":
                    continue
                found = any(path.endswith(name) for path in paths_found(response))
                if found and not first:
                    first.append(time.monotonic() - done)
                if sent >= done + 1.0:
                    late.append(found)
            return len(late) >= 3

        server.until(read_by_readers, "searches answered by a reader")
        assert all(late), f"a reader still lacked {name} a second after it was written"
        return first[0] if first else float("inf")

    assert written_and_found("new-1.png", 1) <= 5.0

    # kill -9 of the writer: another worker takes the lock, uvicorn starts a new worker.
    writer = next(pid for pid, role in seen.items() if role == "writer")
    os.kill(writer, signal.SIGKILL)

    def new_writer() -> int | None:
        answered = server.workers()
        assert writer not in answered
        return next((pid for pid, role in answered.items() if role == "writer"), None)

    successor = server.until(new_writer, "another worker to write", timeout=30)
    assert successor != writer
    make_image(photos / "new-2.png", 2)
    job = server.index()  # a later job completes, through the new writer
    assert job["state"] == "done" and job["embedded"] == 1
    server.until(
        lambda: any(
            any(path.endswith("new-2.png") for path in paths_found(response))
            for _, response in server.burst("POST", "/search", json=SEARCH)
        ),
        "the new writer's change in a search",
    )
    # uvicorn's supervisor starts a process in place of the dead one (it loads its model, then
    # reads: the lock has a holder). Its start is in the log well before it answers.
    server.until(
        lambda: server.log.read_text().count("Started server process") == 3, "the replacement", timeout=60
    )
    assert f"Child process [{writer}] died" in server.log.read_text()
    assert "Traceback" not in server.log.read_text(), server.log.read_text()[-3000:]
