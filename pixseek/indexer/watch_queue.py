"""Debounce and coalesce file-system events into batches of settled paths.

A camera import, a slow copy or an editor's save sends dozens of events per file. Indexing on each
would embed half-written files and run the model once per event. Instead every changed path waits
here until it has been still for a settle interval (no event, and the same size and mtime when
looked at again), and settled paths leave in batches sized for the model while more keep arriving.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

Signature = tuple[int, int] | None  # (size, mtime_ns) of a file; None when the path is gone


def signature(path: str) -> Signature:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


@dataclass
class Change:
    """One path that changed under a watched root, waiting to be indexed or swept."""

    root: Path
    path: str
    folder: bool  # a folder appeared (to be listed) or vanished (its images to be swept)
    signature: Signature
    changed_at: float  # clock time of the last event or signature change
    not_before: float = 0.0  # after a failed attempt: when to try again

    @property
    def gone(self) -> bool:
        return self.signature is None


class ChangeQueue:
    """Thread-safe: observer threads add, the watcher's loop takes.

    ``settle``: seconds a path must stay unchanged before it is taken. ``batch_size``: while other
    paths are still settling, settled files leave only in multiples of it, so a burst costs about
    files / batch_size model calls; ``batch_wait`` bounds how long a settled file waits for that.
    Vanished paths leave last, once nothing else is settling (or after ``batch_wait``): a move is
    seen as a path gone and a path new, and the new one must be indexed first to take over the
    old row (same id and vector) before the sweep of the old path would delete it.
    """

    def __init__(
        self,
        *,
        settle: float,
        batch_size: int,
        batch_wait: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.settle = settle
        self.batch_size = batch_size
        self.batch_wait = batch_wait
        self.clock = clock
        # Keyed by (path, folder): a folder that vanished and one that appeared at the same path
        # are two jobs (sweep the old images, list the new files), not one replacing the other.
        self._changes: dict[tuple[str, bool], Change] = {}
        self._wakeup = threading.Condition()

    def __len__(self) -> int:
        with self._wakeup:
            return len(self._changes)

    def add(self, root: Path, path: str, *, folder: bool = False) -> None:
        """Note a change; a path already waiting starts settling again (an event restarts the wait)."""
        now = self.clock()
        with self._wakeup:
            self._changes[path, folder] = Change(root, path, folder, signature(path), now)

    def add_settled(self, root: Path, path: str, changed_at: float) -> None:
        """Note a file found in a folder that appeared at ``changed_at``, unless events already
        track it: it settles with the folder, so that a moved folder's files leave together."""
        with self._wakeup:
            if (path, False) not in self._changes:
                self._changes[path, False] = Change(root, path, False, signature(path), changed_at)

    def requeue(self, changes: list[Change], delay: float) -> None:
        """Put back changes whose indexing failed, to retry after ``delay`` unless a newer event
        about the same path arrived meanwhile (that one is fresher and settles normally)."""
        not_before = self.clock() + delay
        with self._wakeup:
            for change in changes:
                if (change.path, change.folder) not in self._changes:
                    change.not_before = not_before
                    self._changes[change.path, change.folder] = change

    def retry_now(self) -> int:
        """Make every change that is backing off after a failure due at once (its cause is gone:
        the database answers again), and wake the loop. Returns how many there were."""
        with self._wakeup:
            waiting = [change for change in self._changes.values() if change.not_before]
            for change in waiting:
                change.not_before = 0.0
            self._wakeup.notify_all()
        return len(waiting)

    def wait(self, timeout: float) -> None:
        """Sleep ``timeout`` or until :meth:`wake`. Events do not wake the loop: nothing they
        bring can be done before it settles, and a burst would wake it thousands of times."""
        with self._wakeup:
            self._wakeup.wait(timeout)

    def wake(self) -> None:
        with self._wakeup:
            self._wakeup.notify_all()

    def take_new_folders(self) -> list[Change]:
        """Folders that appeared (created, moved in): the caller lists their files into the queue."""
        with self._wakeup:
            folders = [c for c in self._changes.values() if c.folder and not c.gone]
            for change in folders:
                del self._changes[change.path, True]
        return folders

    def take(self) -> list[Change]:
        """Settled changes to apply now, or [] to keep waiting."""
        now = self.clock()
        with self._wakeup:
            changes = list(self._changes.values())
        ready: list[Change] = []
        settling = 0
        for change in changes:
            if change.not_before > now:
                continue  # backing off after a failure: neither ready nor holding others back
            if now - change.changed_at < self.settle:
                settling += 1
                continue
            if not change.folder:  # looked at again only now: one stat per file per settle interval
                current = signature(change.path)
                if current != change.signature:  # still being written, without an event (polling, NFS)
                    change.signature, change.changed_at = current, now
                    settling += 1
                    continue
            ready.append(change)
        if not ready:
            return []
        waited = now - min(change.changed_at for change in ready) - self.settle
        if settling and waited < self.batch_wait:
            present = sorted((c for c in ready if not c.gone), key=lambda c: c.changed_at)
            ready = present[: len(present) // self.batch_size * self.batch_size]
        with self._wakeup:
            taken = []
            for change in ready:
                key = (change.path, change.folder)
                if self._changes.get(key) is change:  # not replaced by a newer event meanwhile
                    del self._changes[key]
                    taken.append(change)
        return taken
