"""Keep a collection in step with folders as they change: ``pixseek watch`` and the server's watch mode.

The watcher first reconciles each root with the store (the same :class:`Indexer` run as
``pixseek index``: what changed while nobody watched), then follows file-system events. Events only
say *which* paths to look at again; settled paths go in batches through :meth:`Indexer.update`,
so the model, the decoding pool, hash-based move detection and failure records are the indexer's.
Nothing is lost silently: a failed batch is retried with back-off, a root that cannot get events
is polled, and a crash costs nothing that the next start's reconcile does not find again.
"""

from __future__ import annotations

import glob
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pixseek.errors import PixseekError
from pixseek.indexer.pipeline import Indexer, IndexReport, ProgressCallback
from pixseek.indexer.walker import FileEntry, PathRules, is_under, walk_images
from pixseek.indexer.watch_observers import EventSink, Observers, RootState
from pixseek.indexer.watch_outcomes import WatchOutcomes
from pixseek.indexer.watch_queue import Change, ChangeQueue
from pixseek.indexer.watch_rescans import Rescans, RescanTicket

log = logging.getLogger(__name__)

# Files that are still being written under a temporary name: downloads, office lock files, editor
# swap and backup files. The finished file arrives by rename and is indexed then.
TEMP_FILE_PATTERNS = (
    "*.part", "*.partial", "*.crdownload", "*.download", "*.opdownload", "*.filepart",
    "*.tmp", "*.temp", "*.swp", "*.swx", "~$*", "*~",
)  # fmt: skip

ReportCallback = Callable[[str, IndexReport], None]


@dataclass(frozen=True)
class WatchOptions:
    """What to watch and how quickly to react."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    include_hidden: bool = False
    follow_symlinks: bool = True
    settle: float = 1.5  # seconds a file must stay unchanged before it is indexed
    batch_wait: float = 3.0  # longest a settled file waits for a full batch while others arrive
    force_polling: bool = False
    poll_interval: float = 2.0
    retry_delay: float = 2.0  # first wait after a failed batch; doubles up to MAX_RETRY_DELAY
    probe_interval: float = 1.0  # while the database does not answer: how often to ask it (SELECT 1)
    save_interval: float = 5.0  # least time between two saves of the vector index


@dataclass(frozen=True)
class WatcherState:
    """What the watcher is doing, for ``/status`` and logs (plain data: JSON-ready with asdict)."""

    phase: str  # starting, reconciling, watching, stopped
    roots: tuple[RootState, ...]
    pending: int  # paths waiting to settle or to be retried, plus rescans not yet run
    last_error: str | None
    last_error_at: datetime | None
    last_change_at: datetime | None  # when an update last changed the store
    totals: dict[str, int] = field(default_factory=dict)  # embedded, moved, copied, removed, failed
    # "ok", or "unreachable" after a database error: probed every probe_interval, and everything
    # pending is retried as soon as it answers again.
    database: str = "ok"


def check_roots(roots: Sequence[Path]) -> None:
    """Fail fast, before the model loads, on a root that is missing or not a folder."""
    for root in roots:
        if not os.path.exists(root):
            raise FileNotFoundError(f"no such folder: {root}")
        if not os.path.isdir(root):
            raise NotADirectoryError(f"not a folder (watch the folder that holds it): {root}")


def _outermost(paths: Iterable[str]) -> list[str]:
    """``paths`` without those inside another one: listing or watching the outer one covers them."""
    kept: list[str] = []
    for path in sorted(set(paths), key=lambda p: p.count(os.sep)):
        if not any(is_under(path, outer) for outer in kept):
            kept.append(path)
    return kept


class Watcher:
    """Reconciles ``roots`` with the store, then indexes their changes until :meth:`stop`.

    :meth:`run` blocks (the CLI's foreground loop, or a server thread); :meth:`state`,
    :meth:`rescan` and :meth:`stop` may be called from other threads.
    """

    def __init__(
        self,
        indexer: Indexer,
        roots: Sequence[Path],
        options: WatchOptions = WatchOptions(),
        *,
        data_dir: Path | None = None,
        progress: ProgressCallback | None = None,
        on_report: ReportCallback | None = None,
        on_watching: Callable[[WatcherState], None] | None = None,
    ):
        check_roots(roots)
        indexer.check_roots(roots)
        self.indexer = indexer
        self.roots = [Path(root) for root in _outermost(os.path.abspath(root) for root in roots)]
        self.options = options
        self.progress = progress
        self.on_report = on_report
        self.on_watching = on_watching  # told once, when the reconcile is over and events are followed
        self._rules = PathRules(
            options.include, (*options.exclude, *TEMP_FILE_PATTERNS), options.include_hidden
        )
        # What `pixseek rm` keeps out: read again at every rescan, so that a removal made while the
        # watcher runs holds from its next reconcile on (the indexer checks it for each batch too).
        self._excluded: list[str] = indexer.excluded()
        # The data directory (database, indexes, thumbnails) must not index itself when it lies
        # inside a root, nor wake the watcher each time a batch is saved.
        private = os.path.realpath(data_dir) if data_dir is not None else None
        self._private: dict[Path, str | None] = {
            root: os.path.join(root, os.path.relpath(private, os.path.realpath(root)))
            if private and is_under(private, os.path.realpath(root))
            else None
            for root in self.roots
        }
        self.queue = ChangeQueue(
            settle=options.settle, batch_size=indexer.batch_size, batch_wait=options.batch_wait
        )
        self._observers = Observers(
            force_polling=options.force_polling,
            poll_interval=options.poll_interval,
            on_events_lost=self._events_lost,
        )
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._rescans = Rescans(self._lock)
        self._phase = "starting"
        self._outcomes = WatchOutcomes(
            self._lock,
            retry_delay=options.retry_delay,
            probe_interval=options.probe_interval,
            ping=indexer.store.ping,
            on_database_back=self._database_back,
        )
        self._saved_generation: int | None = None  # of the vector index file, when known
        self._next_save = time.monotonic() + options.save_interval  # no save before (throttle, back-off)
        self._tick = max(0.02, min(0.25, options.settle / 4))

    # ---- other threads -----------------------------------------------------------------------
    def state(self) -> WatcherState:
        with self._lock:
            roots = tuple(
                self._observers.states.get(root) or RootState(str(root), "starting") for root in self.roots
            )
            outcomes = self._outcomes
            error, error_at = outcomes.last_error or (None, None)
            return WatcherState(
                phase=self._phase,
                roots=roots,
                pending=len(self.queue) + len(self._rescans),
                last_error=error,
                last_error_at=error_at,
                last_change_at=outcomes.last_change_at,
                totals=dict(outcomes.totals),
                database=outcomes.database,
            )

    def rescan(self, path: Path | str) -> RescanTicket:
        """Check ``path`` (a watched root, or a folder or file inside one) against the store soon:
        changed files are indexed again, earlier failures retried, images whose files are gone
        removed. For changes no event reported (a restored backup, an API request)."""
        absolute = os.path.abspath(path)
        root = next((root for root in self.roots if is_under(absolute, str(root))), None)
        if root is None:
            watched = ", ".join(str(root) for root in self.roots)
            raise PixseekError(f"{path} is not inside a watched folder ({watched})")
        ticket = self._rescans.request(absolute, root)
        self.queue.wake()
        return ticket

    def stop(self) -> None:
        """Ask :meth:`run` to return after the batch in progress."""
        self._stopping.set()
        self.queue.wake()

    # ---- the loop ----------------------------------------------------------------------------
    def run(self) -> None:
        """Watch every root (events from here on are queued), reconcile them with the store, then
        index changes as they settle, until :meth:`stop` or Ctrl-C."""
        try:
            for root in self.roots:
                sink = EventSink(root, self.queue, self._accepts, self._root_gone)
                self._observers.watch(root, sink)
            self._set_phase("reconciling")
            for root in self.roots:
                if self._stopping.is_set():
                    break
                self._rescan_now(root, root)
            self._set_phase("watching")
            log.info("watching %s", ", ".join(str(root) for root in self.roots))
            if self.on_watching and not self._stopping.is_set():
                self.on_watching(self.state())
            while not self._stopping.is_set():
                if not self._step():
                    self.queue.wait(self._tick)
        finally:
            self._observers.stop()
            if self._unsaved:  # also after Ctrl-C in the middle of the indexer's own save
                self._save()
            self._set_phase("stopped")
            self._rescans.abandon("the watcher stopped before this rescan ran")

    def _step(self) -> bool:
        """One round: due rescans, new folders listed, one settled batch applied. Returns whether
        there was work (then the loop goes on at once instead of sleeping a tick)."""
        if self._outcomes.probe_due():
            self._outcomes.probe_database()
        due = self._rescans.take_due()
        for path, root in due:
            self._rescan_now(path, root)
        folders = self.queue.take_new_folders()
        outer = set(_outermost(folder.path for folder in folders))  # events come for each subfolder
        for folder in (folder for folder in folders if folder.path in outer):
            for entry in self._entries(folder.root, folder.path):
                self.queue.add_settled(folder.root, str(entry.path), folder.changed_at)
        for root in {folder.root for folder in folders}:
            if self._observers.check_coverage(
                root, [f.path for f in folders if f.path in outer and f.root == root]
            ):
                self._rescans.schedule(root, root)  # events may have been missed before polling began
        changes = self.queue.take()
        if changes:
            self._apply(changes)
        elif self._unsaved and not len(self.queue) and time.monotonic() >= self._next_save:
            self._save()
        return bool(due) or bool(folders) or bool(changes)

    def _apply(self, changes: list[Change]) -> None:
        entries: dict[Path, FileEntry] = {}
        paths, folders = [], []
        for change in changes:
            if change.folder:
                folders.append(change.path)  # a folder that vanished: its images are swept
            else:
                paths.append(change.path)
                entries.update((entry.path, entry) for entry in self._entries(change.root, change.path))
        try:
            report = self.indexer.update(
                sorted(entries.values(), key=lambda e: e.path),
                paths=paths,
                folders=folders,
                progress=self.progress,
            )
        except Exception as error:  # a full disk, a locked or unreachable database: retry later
            self._outcomes.failed(
                error,
                f"indexing {len(changes)} changed path(s)",
                lambda delay: self.queue.requeue(changes, delay),
            )
            return
        self._succeeded("update", report)

    # ---- rescans (the start-up reconcile is one per root) -------------------------------------
    def _rescan_now(self, path: str | Path, root: Path) -> None:
        try:
            self._excluded = self.indexer.excluded()
            if str(path) == str(root):
                # The whole root: the indexer's own walk, which prunes excluded folders as it goes.
                exclude = (*self.options.exclude, *TEMP_FILE_PATTERNS)
                private = self._private[root]
                if private:
                    rel = os.path.relpath(private, root).replace(os.sep, "/")
                    exclude = (*exclude, f"/{glob.escape(rel)}/")  # anchored: that folder only
                report = self.indexer.run(
                    [root],
                    include=self.options.include,
                    exclude=exclude,
                    include_hidden=self.options.include_hidden,
                    follow_symlinks=self.options.follow_symlinks,
                    retry_failed=True,
                    progress=self.progress,
                )
                self._saved_generation = self.indexer.vectors.generation  # run() saved the index
            else:
                entries = self._entries(root, str(path))
                report = self.indexer.update(entries, folders=[str(path)], progress=self.progress)
        except Exception as error:
            self._outcomes.failed(
                error, f"scanning {path}", lambda delay: self._rescans.schedule(path, root, delay)
            )
            self._rescans.settle(path, None, str(error) or type(error).__name__)
            return
        self._succeeded("reconcile" if str(path) == str(root) else "rescan", report)
        self._rescans.settle(path, report, None)

    # ---- which paths count -------------------------------------------------------------------
    def _accepts(self, root: Path, path: str, is_dir: bool) -> bool:
        """Whether a walk of ``root`` would index ``path`` (or, for a folder, look inside it)."""
        private = self._private[root]
        if private and is_under(path, private):
            return False
        if any(is_under(path, excluded) for excluded in self._excluded):
            return False
        rel = os.path.relpath(path, root).replace(os.sep, "/")
        if rel.startswith("../") or self._rules.skips(rel, is_dir=is_dir):
            return False
        return is_dir or self.options.follow_symlinks or not os.path.islink(path)

    def _entries(self, root: Path, path: str) -> list[FileEntry]:
        """Image files at or under ``path`` that a walk of ``root`` would index."""
        try:
            found = walk_images(
                [Path(path)],
                include_hidden=self.options.include_hidden,
                follow_symlinks=self.options.follow_symlinks,
            )
            return [entry for entry in found if self._accepts(root, str(entry.path), False)]
        except OSError:  # gone (or unreadable) since the event: the sweep deals with it
            return []

    # ---- outcomes ----------------------------------------------------------------------------
    def _succeeded(self, kind: str, report: IndexReport) -> None:
        self._outcomes.succeeded(report)
        if self.on_report:
            self.on_report(kind, report)

    def _database_back(self) -> None:
        """Everything held back while the database did not answer is due now: rescans and changes."""
        self._rescans.all_due_now()
        retried = self.queue.retry_now()
        log.warning("the database answers again: retrying %d change(s) now", retried)

    @property
    def _unsaved(self) -> bool:
        return self.indexer.vectors.generation != self._saved_generation

    def _save(self) -> None:
        generation = self.indexer.vectors.generation
        try:
            self.indexer.save_vectors()
        except Exception as error:  # e.g. a full disk: SQL holds the vectors, a later save catches up
            self._outcomes.failed(error, "saving the vector index", self._retry_save)
        else:
            self._saved_generation = generation
            self._next_save = time.monotonic() + self.options.save_interval

    def _retry_save(self, delay: float) -> None:
        self._next_save = time.monotonic() + delay

    def _root_gone(self, root: Path) -> None:
        message = f"watched folder {root} was removed or unmounted; its images stay indexed until it is back"
        self._outcomes.error(message)
        log.error("%s (then restart the watcher)", message)

    def _events_lost(self) -> None:
        """The kernel dropped events (inotify queue overflow): rescan every event-driven root."""
        for root in self.roots:
            self._rescans.schedule(root, root)
        self.queue.wake()

    def _set_phase(self, phase: str) -> None:
        with self._lock:
            self._phase = phase
