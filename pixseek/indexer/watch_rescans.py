"""The watcher's rescans asked for and not yet run, and the callers waiting on them.

A rescan (the start-up reconcile of a root, a folder whose events may have been missed, an API
request, a retry after a failure) is a path due at a time, and possibly callers waiting for its
outcome. It stands apart from the event loop so that the scheduling, the hand-over of outcomes and
the promise that nobody waits forever live in one place.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from pixseek.indexer.pipeline import IndexReport


@dataclass
class RescanTicket:
    """Handed out by :meth:`Watcher.rescan`: set when that rescan has run, with its outcome, so a
    caller (an API indexing job) can wait for it without running a second indexer."""

    done: threading.Event = field(default_factory=threading.Event)
    report: IndexReport | None = None
    error: str | None = None


class Rescans:
    """Pending rescans, guarded by the watcher's ``lock`` so that its state (what is pending and the
    last error) is read as one."""

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self._due: dict[str, tuple[Path, float]] = {}  # path -> (its root, not before)
        self._tickets: dict[str, list[RescanTicket]] = {}  # path -> callers waiting for its rescan

    def __len__(self) -> int:
        return len(self._due)

    def request(self, path: str, root: Path) -> RescanTicket:
        """Rescan ``path`` (in ``root``) as soon as possible; the ticket is set when it has run."""
        ticket = RescanTicket()
        with self._lock:
            self._due[path] = (root, 0.0)
            self._tickets.setdefault(path, []).append(ticket)
        return ticket

    def schedule(self, path: str | Path, root: Path, delay: float = 0.0) -> None:
        with self._lock:
            self._due[str(path)] = (root, time.monotonic() + delay)

    def take_due(self) -> list[tuple[str, Path]]:
        """The (path, root) rescans whose time has come, no longer pending."""
        now = time.monotonic()
        with self._lock:
            due = [(path, root) for path, (root, not_before) in self._due.items() if not_before <= now]
            for path, _ in due:
                del self._due[path]
        return due

    def all_due_now(self) -> None:
        """Every pending rescan is due at once (the failure that delayed them is over)."""
        with self._lock:
            self._due = {path: (root, 0.0) for path, (root, _) in self._due.items()}

    def settle(self, path: str | Path, report: IndexReport | None, error: str | None) -> None:
        """Hand the outcome of the rescan of ``path`` to those waiting for it."""
        with self._lock:
            tickets = self._tickets.pop(str(path), [])
        for ticket in tickets:
            ticket.report, ticket.error = report, error
            ticket.done.set()

    def abandon(self, error: str) -> None:
        """Settle every waiting ticket with ``error``: nobody may wait forever on a rescan that never runs."""
        for path in list(self._tickets):
            self.settle(path, None, error)
