"""How the watcher's work is going: totals, the last change and error, the back-off, the database.

Every batch, rescan and save of the watcher ends in a success or a failure; this record keeps what
``/status`` shows about them and the rules for what follows a failure (a delay that doubles with
each consecutive one, a probe of a database that stopped answering). It stands apart from the event
loop so that the loop only says what happened, and these rules can be read in one place.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from pixseek.indexer.pipeline import IndexReport
from pixseek.store.database import DatabaseUnavailable

log = logging.getLogger(__name__)

# A failed batch waits at most this long before its next try, whatever failed: a user who frees disk
# space expects the watcher to notice within seconds. A lost database is noticed sooner by probing it.
MAX_RETRY_DELAY = 30.0


def _now() -> datetime:
    return datetime.now(UTC)


class WatchOutcomes:
    """The outcomes of a watcher's work so far, guarded by the watcher's ``lock`` so that its state
    (this record and what is pending) is read as one.

    ``ping`` asks the database whether it answers; ``on_database_back`` is called when it answers
    again after it did not, to make everything held back by the failure due at once.
    """

    def __init__(
        self,
        lock: threading.RLock,
        *,
        retry_delay: float,
        probe_interval: float,
        ping: Callable[[], bool],
        on_database_back: Callable[[], None],
    ) -> None:
        self._lock = lock
        self._retry_delay = retry_delay  # first wait after a failure; doubles up to MAX_RETRY_DELAY
        self._probe_interval = probe_interval
        self._ping = ping
        self._on_database_back = on_database_back
        self._failures = 0  # consecutive ones: the back-off
        self._next_probe = 0.0  # while the database is unreachable: when to ask it again
        self.last_error: tuple[str, datetime] | None = None
        self.last_change_at: datetime | None = None  # when an update last changed the store
        self.totals = dict.fromkeys(("embedded", "moved", "copied", "removed", "failed"), 0)
        self.database = "ok"  # or "unreachable"

    def succeeded(self, report: IndexReport) -> None:
        """Count an update or rescan that ran; the back-off starts over."""
        with self._lock:
            self._failures = 0
            for name in ("embedded", "moved", "copied", "removed"):
                self.totals[name] += getattr(report, name)
            self.totals["failed"] += len(report.failed)
            if report.changes:
                self.last_change_at = _now()
        for path, reason in report.failed:  # recorded in the store too (`pixseek status`, /status)
            log.info("cannot index %s: %s (retried when it changes)", path, reason)

    def failed(self, error: Exception, doing: str, retry: Callable[[float], None]) -> None:
        """Record a failure that stopped a batch, and have ``retry`` put the work back with a
        growing delay (before the error is visible in the watcher's state, which then shows it
        pending)."""
        text = str(error).lower()
        full = (isinstance(error, OSError) and error.errno == errno.ENOSPC) or any(
            words in text
            for words in ("disk is full", "no space left")  # SQLite, PostgreSQL
        )
        hint = " (disk full?)" if full else ""
        lost = isinstance(error, DatabaseUnavailable)
        if isinstance(error, DatabaseUnavailable):  # it retries by itself: no "run the same command"
            cause = f"the database {error.url} is unavailable: {error.reason}"
        else:
            cause = f"{type(error).__name__}: {error}"
        with self._lock:
            self._failures += 1
            delay = min(self._retry_delay * 2 ** (self._failures - 1), MAX_RETRY_DELAY)
            retry(delay)
            message = f"{doing} failed{hint}: {cause}"
            self.last_error = (message, _now())
        log.error("%s; retrying in %.0fs", message, delay, exc_info=not (full or lost))
        if lost:
            self.probe_database()

    def error(self, message: str) -> None:
        """Show a problem that stops no batch (a watched folder gone) as the last error."""
        with self._lock:
            self.last_error = (message, _now())

    def probe_due(self) -> bool:
        """Whether the database is unreachable and it is time to ask it again."""
        return self.database == "unreachable" and time.monotonic() >= self._next_probe

    def probe_database(self) -> None:
        """Ask the database whether it answers. Once it does after it did not, every change and
        rescan held back by the failure is due at once: recovery follows the database within about
        a probe interval, not after a back-off that grew while it was down. A database that answers
        right after an error (a full disk, a dropped connection) leaves the back-off as it is."""
        answers = self._ping()
        with self._lock:
            back = answers and self.database == "unreachable"
            gone = not answers and self.database == "ok"
            self.database = "ok" if answers else "unreachable"
            self._next_probe = time.monotonic() + self._probe_interval
            if back:
                self._failures = 0
        if gone:
            log.warning("the database does not answer; retrying everything pending as soon as it does")
        if back:
            self._on_database_back()
