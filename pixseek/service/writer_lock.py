"""Which of a server's worker processes writes: the one holding an OS file lock.

``pixseek serve --workers N`` runs N processes on one collection, and exactly one of them may
index, watch, rebuild the vector index's base and save it. It is elected by ``flock`` on a file in
the data directory: the kernel releases the lock when its holder exits, however it exits (``kill
-9`` included), so there is no stale lock to clean up, and the other workers, which try to take it
every fraction of a second, pass writing to one of them within that time. The data directory must
be on a local file system (``flock`` over NFS is not reliable).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

from pixseek.errors import PixseekError

if TYPE_CHECKING:
    from pixseek.library import Library

log = logging.getLogger(__name__)


def lock_path(data_dir: Path, collection: str | None) -> Path:
    """The lock file of the servers of ``collection`` (None: the active one) in ``data_dir``."""
    return data_dir / f"serve-{collection or 'active'}.writer.lock"


class WriterLock:
    """An exclusive, non-blocking ``flock`` held for as long as this process keeps it."""

    def __init__(self, path: Path):
        if fcntl is None:
            raise PixseekError("serving with several worker processes needs POSIX file locks (Linux, macOS)")
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock if no other process holds it; True if this process holds it now."""
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # close-on-exec: no child inherits it
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held by another process (BlockingIOError), or the file system refuses
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # for people: who writes now
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the only descriptor releases the flock


# ---- the election: who writes, and the others following what it writes ----------------------------
FOLLOW_EVERY_S = 0.25  # a reader's catch-up with SQL, and its attempt to take the lock
TRIM_EVERY_S = 60.0  # the writer's trim of the change log


class WriterElection:
    """Holds or keeps trying to take ``lock``. While it does not hold it, it calls ``follow``
    every ``interval`` seconds; once it takes it, it follows one last time (the previous writer's
    last batches), then :attr:`writing` turns true and ``on_elected`` runs. The writer calls
    ``maintain`` every ``TRIM_EVERY_S``. Failures (an unreachable database) are logged and retried."""

    def __init__(
        self,
        lock: WriterLock,
        *,
        follow: Callable[[], object],
        on_elected: Callable[[], object],
        maintain: Callable[[], object],
        interval: float = FOLLOW_EVERY_S,
    ):
        self.lock = lock
        self._follow, self._on_elected, self._maintain = follow, on_elected, maintain
        self.interval = interval
        self._writing = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def writing(self) -> bool:
        """True in the one worker that writes (and has caught up with what the last one wrote)."""
        return self._writing

    def try_first(self) -> bool:
        """At start-up, before the index is loaded (so nothing to catch up with): take the lock if
        it is free. True if this process writes."""
        self._writing = self.lock.try_acquire()
        return self._writing

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="pixseek-writer-election", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._writing = False
        self.lock.release()

    def _run(self) -> None:
        trimmed = 0.0
        while not self._stop.wait(self.interval):
            try:
                if self._writing:
                    if time.monotonic() - trimmed >= TRIM_EVERY_S:
                        self._maintain()
                        trimmed = time.monotonic()
                    continue
                self._follow()
                if self.lock.try_acquire():
                    self._follow()
                    self._writing = True
                    log.info("worker %d writes now (indexing jobs, watcher, index saves)", os.getpid())
                    self._on_elected()
            except Exception:  # the database away, a full disk: the next round tries again
                log.exception("following the writer failed; retrying")
                time.sleep(1)


def save_index_only_while(is_writer: Callable[[], bool] | None) -> None:
    """This process saves vector indexes and rebuilds their bases only while ``is_writer()``: a
    server worker process serves one collection, so the rule is the process's. None lifts the
    rule (the server closed: an app built and closed in one process, as in tests, must not leave
    every later index in that process unsaved)."""
    from pixseek.store.vector_index import VectorIndex

    VectorIndex.writes_allowed = is_writer


def follow(library: Library) -> tuple[int, int]:
    """Bring ``library``'s loaded vector index in step with SQL (change log, writer's new base);
    nothing when no index is loaded yet (the first search loads it in step)."""
    vectors = library.loaded_vectors
    if vectors is None or vectors.path is None:
        return 0, 0
    store = library.store
    collection = store.collection(library.collection_name)
    if collection is None or vectors.path.name != collection.name:
        return 0, 0  # dropped, or another collection was activated: the library reloads its own
    added, removed = vectors.follow(store, collection)
    if added or removed:
        log.debug("followed the writer: +%d -%d vectors, generation %d", added, removed, vectors.generation)
    return added, removed


def trim(library: Library) -> None:
    """The writer's upkeep: drop change-log entries no reader needs any more."""
    library.store.trim_change_log()
