"""Which watchdog observer follows each watched root, and how its events reach the change queue.

inotify (or the platform's own events elsewhere) is the default. A root is polled instead when
``--poll`` asks for it, when it lies on a network filesystem (changes made by other machines send
no events), or when inotify cannot watch all of it: ``fs.inotify.max_user_watches`` reached.
watchdog 7 skips a watch that fails below the root silently (watchdog 4 raised), so after
scheduling we check in /proc that every folder really got a watch, instead of trusting the
absence of an error.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.observers.polling import PollingObserver

from pixseek.indexer.watch_queue import ChangeQueue

log = logging.getLogger(__name__)

MODE_POLLING = "polling"
RECHECK_DELAY = 1.0  # seconds watchdog gets to add the watch of a folder that was just created
_RAISE_WATCH_LIMIT = "raise it, e.g. `sudo sysctl fs.inotify.max_user_watches=524288`"
# Filesystems whose changes made elsewhere (another client, the server) raise no local events.
NETWORK_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "9p", "ceph", "glusterfs", "fuse.glusterfs",
     "lustre", "gpfs", "beegfs", "fuse.sshfs", "fuse.rclone", "fuse.s3fs", "davfs", "fuse.davfs2"}
)  # fmt: skip
# Reading a file (the indexer does) must not look like a change to it.
_READ_EVENTS = frozenset({"opened", "closed_no_write"})
# A folder's own modified/attrib events accompany every change inside it: the files tell more.
_FOLDER_EVENTS = frozenset({"created", "deleted", "moved"})
_FDINFO_WATCH = re.compile(r"^inotify wd:\S+ ino:([0-9a-f]+) sdev:([0-9a-f]+)", re.MULTILINE)


@dataclass(frozen=True)
class RootState:
    path: str
    mode: str  # "inotify" (or the native observer's name elsewhere) or "polling"
    reason: str | None = None  # why it is polled


class EventSink(FileSystemEventHandler):
    """Queues the paths that watchdog events under one root name, if the walk would index them."""

    def __init__(
        self,
        root: Path,
        queue: ChangeQueue,
        accepts: Callable[[Path, str, bool], bool],
        on_root_gone: Callable[[Path], None],
    ):
        self.root = root
        self.queue = queue
        self.accepts = accepts
        self.on_root_gone = on_root_gone

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in _READ_EVENTS:
            return
        if event.is_directory and event.event_type not in _FOLDER_EVENTS:
            return
        raw_paths = [event.src_path, getattr(event, "dest_path", "")]
        for path in (os.fsdecode(raw) for raw in raw_paths if raw):
            if path == str(self.root):
                if event.event_type != "created":
                    self.on_root_gone(self.root)
            elif self.accepts(self.root, path, event.is_directory):
                self.queue.add(self.root, path, folder=event.is_directory)


def filesystem_type(path: str, mounts: str | None = None) -> str | None:
    """The filesystem type ``path`` lives on, from /proc/self/mounts (or ``mounts``, its text)."""
    if mounts is None:
        try:
            with open("/proc/self/mounts", encoding="utf-8", errors="surrogateescape") as handle:
                mounts = handle.read()
        except OSError:
            return None  # not Linux: no way to tell, assume local
    real = os.path.realpath(path)
    best, best_type = "", None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), fields[1])  # "\040" is a space
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, best_type = point, fields[2]
    return best_type


def inotify_watched_folders() -> set[tuple[int, int, int]] | None:
    """(major, minor, inode) of every folder this process holds an inotify watch on, read from
    /proc/self/fdinfo; None where that cannot be read (then coverage cannot be checked)."""
    watched: set[tuple[int, int, int]] = set()
    try:
        descriptors = os.listdir("/proc/self/fd")
    except OSError:
        return None
    for fd in descriptors:
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != "anon_inode:inotify":
                continue
            with open(f"/proc/self/fdinfo/{fd}") as handle:
                info = handle.read()
        except OSError:
            continue  # closed meanwhile (listdir itself opened one)
        for match in _FDINFO_WATCH.finditer(info):
            device = int(match[2], 16)  # the kernel's dev_t: major in the high 12 bits, minor in the low 20
            watched.add((device >> 20, device & 0xFFFFF, int(match[1], 16)))
    return watched


def unwatched_folders(folders: Iterable[str]) -> list[str]:
    """The folders under (and including) ``folders`` that hold no inotify watch of this process:
    what watchdog skips silently when the watch limit is reached. Symlinked folders are not
    descended, as watchdog does not watch through them either."""
    watched = inotify_watched_folders()
    if watched is None:
        return []
    missing = []
    for top in folders:
        for folder, subfolders, _ in os.walk(top):
            subfolders[:] = [name for name in subfolders if not os.path.islink(os.path.join(folder, name))]
            try:
                st = os.stat(folder)
            except OSError:
                continue  # removed meanwhile
            if (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino) not in watched:
                missing.append(folder)
    return missing


def _inotify_limit(name: str) -> str:
    try:
        with open(f"/proc/sys/fs/inotify/{name}") as handle:
            return f"fs.inotify.{name}={handle.read().strip()}"
    except OSError:
        return f"fs.inotify.{name}"


def _explain(error: OSError) -> str:
    if error.errno == errno.ENOSPC:
        return f"inotify watch limit reached ({_inotify_limit('max_user_watches')}); {_RAISE_WATCH_LIMIT}"
    if error.errno == errno.EMFILE:
        return f"inotify instance limit reached ({_inotify_limit('max_user_instances')})"
    return f"cannot watch for events: {error.strerror or error}"


class _LostEventsAlarm(logging.Handler):
    """watchdog only logs it when the kernel's inotify queue overflowed and events were dropped;
    hearing that line is the one way to learn that a rescan is needed."""

    def __init__(self, on_lost: Callable[[], None]):
        super().__init__(logging.WARNING)
        self.on_lost = on_lost

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self.on_lost()


class _ShutdownRaceFilter(logging.Filter):
    """watchdog 7 logs an ERROR when an inotify emitter polls once more while being stopped; the
    race is harmless (nothing is lost, the watch is going away) and must not alarm users."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "called when the thread is inactive" not in record.getMessage()


class Observers:
    """The native observer and the polling one, and which of them follows each root."""

    def __init__(self, *, force_polling: bool, poll_interval: float, on_events_lost: Callable[[], None]):
        self.force_polling = force_polling
        self.poll_interval = poll_interval
        self._alarm = _LostEventsAlarm(on_events_lost)
        self._race_filter = _ShutdownRaceFilter()
        self._native: BaseObserver | None = None
        self._polling: BaseObserver | None = None
        self._watches: dict[Path, tuple[BaseObserver, ObservedWatch]] = {}
        self._handlers: dict[Path, EventSink] = {}
        self.states: dict[Path, RootState] = {}

    @property
    def native_mode(self) -> str:
        name = type(self._native).__name__ if self._native is not None else getattr(Observer, "__name__", "")
        return "inotify" if name == "InotifyObserver" else name.removesuffix("Observer").lower()

    def watch(self, root: Path, handler: EventSink) -> RootState:
        """Follow ``root`` with events if they can cover it, else by polling (and log why)."""
        self._handlers[root] = handler
        if self.force_polling:
            return self._poll(root, "polling asked for (--poll)", warn=False)
        fs_type = filesystem_type(str(root))
        if fs_type in NETWORK_FILESYSTEMS:
            return self._poll(root, f"on a {fs_type} network filesystem, which sends no change events")
        try:
            if self._native is None:
                self._native = self._start_native()
            watch = self._native.schedule(handler, str(root), recursive=True)
        except OSError as error:  # inotify_init (instance limit) or inotify_add_watch on the root
            return self._poll(root, _explain(error))
        self._watches[root] = (self._native, watch)
        self.states[root] = RootState(str(root), self.native_mode)
        if self.native_mode == "inotify":
            self.check_coverage(root, [str(root)])
        return self.states[root]

    def _start_native(self) -> BaseObserver:
        observer = Observer()
        observer.start()
        logging.getLogger("watchdog").addHandler(self._alarm)
        logging.getLogger("watchdog.observers.inotify").addFilter(self._race_filter)
        return observer

    def check_coverage(self, root: Path, folders: list[str]) -> bool:
        """For an inotify root: poll it instead if some of ``folders`` (and below) got no watch.
        Returns whether it switched. A folder created this very moment may not have its watch
        yet (watchdog adds it from its own thread), hence a second look before switching."""
        if self.states[root].mode != "inotify":
            return False
        missing = unwatched_folders(folders)
        if missing:
            time.sleep(RECHECK_DELAY)
            missing = [folder for folder in unwatched_folders(missing) if os.path.isdir(folder)]
        if not missing:
            return False
        observer, watch = self._watches.pop(root)
        observer.unschedule(watch)
        self._poll(
            root,
            f"inotify could not watch {len(missing)} folder(s), e.g. {missing[0]}: watch limit "
            f"reached? ({_inotify_limit('max_user_watches')}; {_RAISE_WATCH_LIMIT})",
        )
        return True

    def _poll(self, root: Path, reason: str, *, warn: bool = True) -> RootState:
        if self._polling is None:
            self._polling = PollingObserver(timeout=self.poll_interval)
            self._polling.start()
        (log.warning if warn else log.info)(
            "watching %s by polling every %gs: %s", root, self.poll_interval, reason
        )
        watch = self._polling.schedule(self._handlers[root], str(root), recursive=True)
        self._watches[root] = (self._polling, watch)
        self.states[root] = RootState(str(root), MODE_POLLING, reason)
        return self.states[root]

    def stop(self) -> None:
        for observer in (self._native, self._polling):
            if observer is not None:
                observer.stop()
        for observer in (self._native, self._polling):
            if observer is not None and observer.is_alive():
                observer.join()
        logging.getLogger("watchdog").removeHandler(self._alarm)
        logging.getLogger("watchdog.observers.inotify").removeFilter(self._race_filter)
