"""Folder watch on real file-system events (inotify and polling) with the tiny CLIP checkpoint.

Every step waits for the store to reach the expected state within a deadline, and counts model
calls: moves and touches must reuse stored vectors, slow writes must be embedded once.
"""

from __future__ import annotations

import ctypes
import errno
import json
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner
from watchdog.events import FileSystemEventHandler
from watchdog.observers import Observer, inotify_c

from pixseek.cli import _sigterm_as_ctrl_c, app
from pixseek.config import Settings
from pixseek.embedding import load_encoder
from pixseek.errors import PixseekError
from pixseek.indexer import watch_observers
from pixseek.indexer.walker import PathRules, walk_images
from pixseek.indexer.watch import Watcher, WatchOptions
from pixseek.indexer.watch_observers import filesystem_type, unwatched_folders
from pixseek.indexer.watch_queue import ChangeQueue
from pixseek.library import Library
from pixseek.media.files import FileOpener
from pixseek.store.models import STATUS_INDEXED
from pixseek.store.records import ChangeBatch
from pixseek.store.vector_index import VectorIndex
from test_indexer import CountingEncoder, assert_consistent

SETTLE = 0.3
POLL_INTERVAL = 0.2
MODES = {"events": {}, "polling": {"force_polling": True, "poll_interval": POLL_INTERVAL}}


@pytest.fixture(scope="module")
def encoder(clip_dir: Path):
    """One model for the module (loading it per test would cost more than the tests)."""
    return load_encoder(str(clip_dir), device="cpu", precision="fp32")


@pytest.fixture
def library(settings: Settings) -> Iterator[Library]:
    library = Library(settings)
    yield library
    library.close()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    return folder


@pytest.fixture(params=list(MODES))
def mode(request: pytest.FixtureRequest) -> dict:
    return MODES[request.param]


def make_image(path: Path, seed: int, side: int = 48) -> Path:
    """A PNG whose content differs for every seed (distinct content hashes, so no vector reuse)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (side, side, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="PNG")
    return path


def wait_until(condition: Callable[[], object], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


class Watching:
    """A watcher running in a thread over ``library``, with its model calls counted."""

    def __init__(self, library: Library, encoder, roots: list[Path], **options):
        self.library = library
        self.encoder = CountingEncoder(encoder)
        self.indexer = library.indexer(self.encoder)
        options = {"settle": SETTLE, "save_interval": 0.2, **options}
        self.watcher = Watcher(
            self.indexer, roots, WatchOptions(**options), data_dir=library.settings.data_dir
        )
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="watcher")

    def _run(self) -> None:
        try:
            self.watcher.run()
        except BaseException as error:  # surfaced by the test, not lost in the thread
            self.error = error

    def __enter__(self) -> Watching:
        self.thread.start()
        wait_until(lambda: self.watcher.state().phase == "watching" or self.error, "the watcher to start")
        assert self.error is None, self.error
        return self

    def __exit__(self, *exc_info) -> None:
        self.watcher.stop()
        self.thread.join(30)
        assert not self.thread.is_alive(), "the watcher did not stop"
        assert self.error is None, self.error
        assert self.watcher.state().phase == "stopped"

    def indexed(self) -> dict[str, int]:
        """Path -> image id of every indexed image."""
        collection = self.library.collection()
        rows = self.library.store.known_files(collection.id, ["/"])
        return {path: row.id for path, row in rows.items() if row.status == STATUS_INDEXED}

    def wait_for(self, expected: dict[Path, int | None], what: str, timeout: float = 20.0) -> dict[str, int]:
        """Wait until the indexed paths are exactly ``expected`` (ids checked where given)."""
        want = {str(path): image_id for path, image_id in expected.items()}

        def reached() -> bool:
            assert self.error is None, self.error
            rows = self.indexed()
            return rows.keys() == want.keys() and all(
                image_id is None or rows[path] == image_id for path, image_id in want.items()
            )

        wait_until(reached, what, timeout)
        return self.indexed()

    def idle(self) -> None:
        wait_until(lambda: self.watcher.state().pending == 0, "the watcher to be idle")


def test_create_touch_modify_rename_delete(library: Library, encoder, root: Path, mode: dict) -> None:
    with Watching(library, encoder, [root], **mode) as watching:
        photo = make_image(root / "a.png", seed=1)
        rows = watching.wait_for({photo: None}, "the new file")
        first_id = rows[str(photo)]
        assert watching.encoder.images_embedded == 1

        touched = 1_600_000_000_000_000_000
        os.utime(photo, ns=(touched, touched))  # mtime changes, content does not
        collection = library.collection()
        wait_until(
            lambda: library.store.image_by_path(collection.id, str(photo)).mtime_ns == touched,
            "the touch to be recorded",
        )
        assert watching.indexed() == {str(photo): first_id}
        assert watching.encoder.images_embedded == 1, "a touch must not re-embed"

        make_image(photo, seed=2)  # new content at the same path: a new vector, a new id
        wait_until(lambda: watching.indexed()[str(photo)] != first_id, "the new content's row")
        second_id = watching.indexed()[str(photo)]
        assert watching.encoder.images_embedded == 2

        renamed = root / "renamed.png"
        os.rename(photo, renamed)
        watching.wait_for({renamed: second_id}, "the rename")
        assert watching.encoder.images_embedded == 2, "a rename must keep the vector"

        renamed.unlink()
        watching.wait_for({}, "the deletion")
        watching.idle()
        assert watching.encoder.images_embedded == 2

        def saved_generation() -> int:  # what a reader in another process loads
            return VectorIndex.load(library.index_path(collection), collection.dim).generation

        wait_until(lambda: saved_generation() == library.collection().generation, "the save when idle")
    assert_consistent(library)


def test_folder_moved_in_renamed_and_moved_out(
    library: Library, encoder, root: Path, tmp_path: Path, mode: dict
) -> None:
    outside = tmp_path / "elsewhere"
    album = [make_image(outside / "album" / "sub" / f"{i}.png", seed=10 + i) for i in range(3)]
    with Watching(library, encoder, [root], **mode) as watching:
        shutil.move(outside / "album", root / "album")
        inside = [root / "album" / "sub" / path.name for path in album]
        rows = watching.wait_for(dict.fromkeys(inside), "the folder moved in")
        assert watching.encoder.images_embedded == 3

        os.rename(root / "album", root / "renamed")
        renamed = {root / "renamed" / "sub" / path.name: rows[str(path)] for path in inside}
        watching.wait_for(renamed, "the folder renamed inside the root (same ids)")
        assert watching.encoder.images_embedded == 3, "a folder move must keep the vectors"

        shutil.move(root / "renamed", outside / "back")
        watching.wait_for({}, "the folder moved out")
        watching.idle()
        assert watching.encoder.images_embedded == 3
    assert_consistent(library)


def test_large_file_copied_slowly_is_indexed_once(
    library: Library, encoder, root: Path, tmp_path: Path, mode: dict
) -> None:
    source = make_image(tmp_path / "big.png", seed=3, side=1200)  # ~4 MB of noise
    data = source.read_bytes()
    target = root / "big.png"
    chunks = 30
    with Watching(library, encoder, [root], **mode) as watching:
        with open(target, "wb") as handle:
            for i in range(chunks):  # a chunk every 50 ms, well inside the settle time
                handle.write(data[i * len(data) // chunks : (i + 1) * len(data) // chunks])
                handle.flush()
                time.sleep(0.05)
        watching.wait_for({target: None}, "the copied file")
        watching.idle()
        state = watching.watcher.state()
        assert watching.encoder.images_embedded == 1, "embedded once, after the copy ended"
        assert state.totals["failed"] == 0, "never tried while half-written"
    collection = library.collection()
    assert library.store.image_by_path(collection.id, str(target)).size == len(data)


def test_temp_files_safe_saves_and_ignored_paths(settings: Settings, encoder, tmp_path: Path) -> None:
    root = tmp_path / "library"
    data_dir = root / "pixseek-data"  # the data dir inside the watched folder: never indexed
    library = Library(settings.model_copy(update={"data_dir": data_dir}))
    make_image(data_dir / "thumbnails" / "before.png", seed=20)
    ignored = [
        root / ".hidden.png",
        root / ".cache" / "x.png",
        root / "thumbs" / "t.png",  # --exclude thumbs
        root / "~$lock.png",
        root / "download.png.crdownload",
        data_dir / "thumbnails" / "after.png",
    ]
    try:
        with Watching(library, encoder, [root], exclude=("thumbs",)) as watching:
            for seed, path in enumerate(ignored, start=21):
                make_image(path, seed)
            # A download written under a temporary name, then renamed into place: indexed once.
            data = make_image(tmp_path / "source.png", seed=30).read_bytes()
            partial = root / "photo.png.part"
            with open(partial, "wb") as handle:
                for i in range(10):
                    handle.write(data[i * len(data) // 10 : (i + 1) * len(data) // 10])
                    handle.flush()
                    time.sleep(0.03)
            photo = root / "photo.png"
            os.rename(partial, photo)
            rows = watching.wait_for({photo: None}, "the renamed download")
            assert watching.encoder.images_embedded == 1

            # An editor's safe save: new content in a temp file, renamed over the original.
            make_image(root / "photo.png.tmp", seed=31)
            os.replace(root / "photo.png.tmp", photo)
            wait_until(lambda: watching.indexed().get(str(photo)) not in (None, rows[str(photo)]), "the save")
            watching.idle()
            assert watching.indexed().keys() == {str(photo)}
            assert watching.encoder.images_embedded == 2
            assert watching.watcher.state().totals["failed"] == 0
        assert_consistent(library)
    finally:
        library.close()


def test_burst_of_500_files_is_embedded_in_batches(
    settings: Settings, encoder, root: Path, tmp_path: Path
) -> None:
    library = Library(settings.model_copy(update={"batch_size": 32}))
    staging = tmp_path / "camera"
    files = [make_image(staging / f"img_{i:04d}.png", seed=1000 + i, side=32) for i in range(500)]
    try:
        with Watching(library, encoder, [root]) as watching:
            for path in files:  # a camera import: files land one after another, longer than a settle
                os.rename(path, root / path.name)
                time.sleep(0.002)
            watching.wait_for({root / path.name: None for path in files}, "the burst", timeout=60)
            watching.idle()
        calls = watching.encoder.image_calls
        assert watching.encoder.images_embedded == 500
        # Full batches while files keep arriving; only the last batch may be partial.
        assert -(-500 // 32) <= calls <= -(-500 // 32) + 2, f"{calls} model calls"
        assert_consistent(library)
    finally:
        library.close()


@pytest.mark.parametrize(
    ("include", "exclude", "hidden"),
    [
        ((), (), False),
        ((), (), True),
        ((), ("*/thumbnails/*", "*.gif", "@eaDir"), False),
        (("*.png",), ("2020/*",), False),
        (("2020/*",), ("*.PNG",), True),
    ],
)
def test_path_rules_judge_single_paths_exactly_as_the_walk_does(
    tmp_path: Path, include: tuple[str, ...], exclude: tuple[str, ...], hidden: bool
) -> None:
    rels = [
        "a.jpg", "b.gif", ".hidden.png", "thumbnails/t.jpg", "2020/c.png", "2020/thumbnails/t.png",
        "2020/@eaDir/x.jpg", "2020/.trash/y.png", ".cache/z.png", "deep/2020/d.png",
    ]  # fmt: skip
    for rel in rels:
        make_image(tmp_path / rel, seed=len(rel), side=4)
    walked = {
        entry.path.relative_to(tmp_path).as_posix()
        for entry in walk_images([tmp_path], include=include, exclude=exclude, include_hidden=hidden)
    }
    rules = PathRules(include, exclude, hidden)
    assert {rel for rel in rels if not rules.skips(rel, is_dir=False)} == walked


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_queue_releases_full_batches_while_files_arrive_and_deletions_last(tmp_path: Path) -> None:
    clock = FakeClock()
    queue = ChangeQueue(settle=1.0, batch_size=16, batch_wait=3.0, clock=clock)
    files = [str(make_image(tmp_path / f"{i:02d}.png", seed=i, side=8)) for i in range(40)]
    gone = str(tmp_path / "gone.png")  # deleted, or the old name of a moved file
    for path in [*files, gone]:
        queue.add(tmp_path, path)
    assert queue.take() == [], "nothing has settled yet"
    clock.now += 1.0
    queue.add(tmp_path, files[0])  # written again: settles anew
    late = str(make_image(tmp_path / "late.png", seed=99, side=8))
    queue.add(tmp_path, late)
    first = [change.path for change in queue.take()]
    assert len(first) == 32 and gone not in first, "two full batches while files settle; no deletion"
    assert queue.take() == [], "the other 7 settled files wait for a full batch"
    clock.now += 1.0
    rest = {change.path for change in queue.take()}  # nothing settling: all of it, deletion included
    assert rest == set(files) - set(first) | {late, gone} and len(queue) == 0

    # A steady trickle never fills a batch: batch_wait bounds how long settled files wait.
    trickle = [str(make_image(tmp_path / f"t{i}.png", seed=100 + i, side=8)) for i in range(3)]
    queue.add(tmp_path, trickle[0])
    clock.now += 2.0
    queue.add(tmp_path, trickle[1])
    assert queue.take() == []
    clock.now += 1.9
    queue.add(tmp_path, trickle[2])
    assert queue.take() == []
    clock.now += 0.2  # trickle[0] has now waited more than batch_wait since it settled
    assert {change.path for change in queue.take()} == set(trickle[:2])


def _fail_inotify_watches(monkeypatch: pytest.MonkeyPatch, refuse: Callable[[bytes], bool]) -> None:
    """Make the kernel refuse inotify watches for some paths as at fs.inotify.max_user_watches."""
    real = inotify_c.inotify_add_watch

    def add_watch(fd: int, path: bytes, mask: int) -> int:
        if refuse(path):
            ctypes.set_errno(errno.ENOSPC)
            return -1
        return real(fd, path, mask)

    monkeypatch.setattr(inotify_c, "inotify_add_watch", add_watch)


@pytest.mark.parametrize("where", ["root", "subfolder"])
def test_falls_back_to_polling_when_the_watch_limit_is_reached(
    library: Library,
    encoder,
    root: Path,
    where: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    deep = root / "2024" / "deep"
    deep.mkdir(parents=True)
    refused = str(root if where == "root" else deep).encode()
    _fail_inotify_watches(monkeypatch, lambda path: path == refused)  # watchdog skips subfolders silently
    monkeypatch.setattr(watch_observers, "RECHECK_DELAY", 0.05)
    with (
        caplog.at_level(logging.WARNING),
        Watching(library, encoder, [root], poll_interval=POLL_INTERVAL) as watching,
    ):
        (state,) = watching.watcher.state().roots
        assert state.mode == "polling" and "max_user_watches" in state.reason
        assert f"watching {root} by polling" in caplog.text
        photo = make_image(deep / "a.png", seed=40)
        watching.wait_for({photo: None}, "a file in the polled folder")


def test_unwatched_folders_are_found(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    observer = Observer()
    observer.start()
    try:
        watch = observer.schedule(FileSystemEventHandler(), str(tmp_path), recursive=False)
        assert sorted(unwatched_folders([str(tmp_path)])) == [str(tmp_path / "a"), str(tmp_path / "a" / "b")]
        observer.unschedule(watch)
        observer.schedule(FileSystemEventHandler(), str(tmp_path), recursive=True)
        assert unwatched_folders([str(tmp_path)]) == []
    finally:
        observer.stop()
        observer.join()


def test_network_filesystems_are_recognised() -> None:
    mounts = (
        "/dev/sda1 / ext4 rw 0 0\n"
        "nas:/photos /mnt/nas nfs4 rw 0 0\n"
        "//srv/share /mnt/my\\040share cifs rw 0 0\n"
    )
    assert filesystem_type("/mnt/nas/2024/a.jpg", mounts) == "nfs4"
    assert filesystem_type("/mnt/my share/x", mounts) == "cifs"
    assert filesystem_type("/mnt/nassy", mounts) == "ext4"


def test_unreadable_file_is_recorded_and_retried_on_change(
    library: Library, encoder, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked: set[Path] = set()
    read = FileOpener.read

    def guarded(opener: FileOpener, path: Path) -> bytes:  # chmod 000 does not stop root: refuse here
        if Path(path) in locked:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return read(opener, path)

    monkeypatch.setattr(FileOpener, "read", guarded)  # how the indexer reads every file
    with Watching(library, encoder, [root]) as watching:
        photo = root / "locked.png"
        locked.add(photo)
        make_image(photo, seed=50)
        collection = library.collection()
        wait_until(lambda: library.store.failures(collection.id), "the failure to be recorded")
        assert library.store.failures(collection.id) == [(str(photo), "unreadable: Permission denied")]

        flicker = make_image(root / "flicker.png", seed=51)  # gone before it settles: no work, no error
        flicker.unlink()

        locked.clear()
        os.chmod(photo, 0o644)  # the user's fix: an attribute change, same size and mtime
        watching.wait_for({photo: None}, "the retried file")
        watching.idle()
        assert library.store.failures(collection.id) == []
        assert watching.encoder.images_embedded == 1
        assert watching.watcher.state().last_error is None


def test_full_disk_is_reported_and_retried(
    library: Library, encoder, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    full = threading.Event()
    full.set()
    apply = library.store.apply

    def apply_unless_full(collection_id: int, batch: ChangeBatch):
        if full.is_set():
            raise OperationalError("INSERT", {}, sqlite3.OperationalError("database or disk is full"))
        return apply(collection_id, batch)

    with Watching(library, encoder, [root], retry_delay=0.2) as watching:
        monkeypatch.setattr(library.store, "apply", apply_unless_full)
        photo = make_image(root / "a.png", seed=60)
        wait_until(lambda: watching.watcher.state().last_error, "the error to be reported")
        state = watching.watcher.state()
        assert "disk full" in state.last_error and "database or disk is full" in state.last_error
        assert state.pending >= 1, "the change is kept for a retry"
        assert watching.indexed() == {}
        full.clear()  # space freed
        watching.wait_for({photo: None}, "the retry after the disk was freed")
    assert_consistent(library)


def test_restart_reconciles_what_changed_while_stopped(library: Library, encoder, root: Path) -> None:
    photos = [make_image(root / f"{i}.png", seed=70 + i) for i in range(3)]
    with Watching(library, encoder, [root]) as watching:
        rows = watching.wait_for(dict.fromkeys(photos), "the initial reconcile")
        assert watching.encoder.images_embedded == 3
    added = make_image(root / "new" / "added.png", seed=80)
    photos[0].unlink()
    moved = root / "new" / "moved.png"
    os.rename(photos[1], moved)
    with Watching(library, encoder, [root]) as watching:
        # The reconcile runs before the watcher reports "watching": no waiting needed.
        expected = {str(added): None, str(moved): rows[str(photos[1])], str(photos[2]): rows[str(photos[2])]}
        current = watching.indexed()
        assert current.keys() == expected.keys()
        assert all(image_id is None or current[path] == image_id for path, image_id in expected.items())
        assert watching.encoder.images_embedded == 1, "only the added file is embedded"
    assert_consistent(library)


def test_rescan_of_a_sub_path_and_state(library: Library, encoder, root: Path, tmp_path: Path) -> None:
    inside = [make_image(root / "sub" / f"{i}.png", seed=90 + i) for i in range(2)]
    other = make_image(root / "other.png", seed=95)
    with Watching(library, encoder, [root]) as watching:
        watching.wait_for(dict.fromkeys([*inside, other]), "the initial reconcile")
        assert watching.encoder.images_embedded == 3
        # Rows removed behind the watcher's back (like `pixseek rm`): no file event will say so.
        collection = library.collection()
        known = library.store.known_files(collection.id, [str(root / "sub")])
        changes = library.store.apply(collection.id, ChangeBatch(deleted=[r.id for r in known.values()]))
        library.vectors(collection).update(
            changes.added_ids, changes.added_vectors, changes.removed_ids, changes.generation
        )
        watching.watcher.rescan(root / "sub")
        watching.wait_for(dict.fromkeys([*inside, other]), "the rescan")
        assert watching.encoder.images_embedded == 5, "the two removed images, embedded again"
        with pytest.raises(PixseekError, match="not inside a watched folder"):
            watching.watcher.rescan(tmp_path / "elsewhere")
        watching.idle()
        state = watching.watcher.state()
        assert [(r.path, r.mode) for r in state.roots] == [(str(root), "inotify")]
        assert state.phase == "watching" and state.pending == 0 and state.last_error is None
        assert state.totals["embedded"] == 5
        assert json.loads(json.dumps(asdict(state), default=str))["roots"][0]["mode"] == "inotify"
    assert_consistent(library)


@pytest.mark.slow
def test_kill_9_mid_burst_then_restart_is_complete_and_consistent(tmp_path: Path, clip_dir: Path) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    data_dir = tmp_path / "data"
    environment = {
        **os.environ,
        "PIXSEEK_DATA_DIR": str(data_dir),
        "PIXSEEK_MODEL": str(clip_dir),
        "PIXSEEK_BATCH_SIZE": "4",
        "PIXSEEK_DECODE_WORKERS": "1",
        "PIXSEEK_PRECISION": "fp32",
    }
    command = [sys.executable, "-m", "pixseek.cli", "watch", str(root), "--settle", "0.2"]
    staging = tmp_path / "staging"
    files = [make_image(staging / f"img_{i:04d}.png", seed=2000 + i) for i in range(300)]
    library = Library(Settings(data_dir=data_dir))

    def indexed() -> int:
        collection = library.store.collection("default") if (data_dir / "pixseek.db").exists() else None
        return library.store.stats(collection.id).indexed if collection else 0

    log = tmp_path / "watch.log"

    def start() -> subprocess.Popen:
        with open(log, "a") as stderr:
            return subprocess.Popen(command, env=environment, stderr=stderr)

    watcher = start()
    try:
        # Its start-up summary: the reconcile is done and events are followed from then on.
        wait_until(  # a new process: start-up, model load and reconcile (slow on a loaded machine)
            lambda: "Ctrl-C stops" in log.read_text() or watcher.poll() is not None,
            "the watcher to start",
            timeout=60,
        )
        assert watcher.poll() is None, log.read_text()
        assert "(reconcile" in log.read_text() and f"watching {root} by inotify" in log.read_text()
        for path in files:
            os.rename(path, root / path.name)
        wait_until(lambda: indexed() >= 40 or watcher.poll() is not None, "the first batches", timeout=60)
        assert watcher.poll() is None, log.read_text()
        watcher.send_signal(signal.SIGKILL)
        watcher.wait()
        interrupted = indexed()
        assert 40 <= interrupted < 300, "killed in the middle of the burst"

        watcher = start()
        wait_until(lambda: indexed() == 300 or watcher.poll() is not None, "the restart", timeout=60)
        assert watcher.poll() is None, log.read_text()
        watcher.send_signal(signal.SIGINT)  # Ctrl-C: stops cleanly and saves the vector index
        assert watcher.wait(timeout=30) == 0, log.read_text()
        assert log.read_text().endswith("stopped watching\n") and "Traceback" not in log.read_text()
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    collection = library.collection()
    in_sql = sorted(library.store.indexed_ids(collection.id).tolist())
    saved = VectorIndex.load(library.index_path(collection), collection.dim)
    assert len(in_sql) == 300 and saved.generation == collection.generation
    assert sorted(saved.ids().tolist()) == in_sql, "the saved FAISS index holds exactly the SQL embeddings"
    library.close()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "missing", "no such folder"),
        (lambda tmp: make_image(tmp / "a.png", seed=1), "not a folder"),
    ],
)
def test_watch_command_refuses_bad_paths_before_loading_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make: Callable[[Path], Path], message: str
) -> None:
    monkeypatch.setenv("PIXSEEK_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PIXSEEK_MODEL", str(tmp_path / "no-model-needed"))
    runner = CliRunner(env={"COLUMNS": "300"})  # wide enough that the message does not wrap
    result = runner.invoke(app, ["watch", str(make(tmp_path))])
    assert result.exit_code == 2 and message in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert "--poll" in runner.invoke(app, ["watch", "--help"]).output


def test_sigterm_stops_the_watch_command_like_ctrl_c() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), _sigterm_as_ctrl_c():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # interrupted at once by the signal
    assert signal.getsignal(signal.SIGTERM) is before, "the previous handler is restored"
