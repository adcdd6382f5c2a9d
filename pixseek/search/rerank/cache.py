"""Per-image re-ranker features on disk: an LRU bounded by a byte budget.

One directory per model fingerprint and precision (``data_dir/rerank-cache/<fingerprint>-<precision>``),
one ``.npy`` file per image named by its content hash, so moved or copied files share an entry and
another model never reads these features. Writes go to a temporary file renamed into place, so a
reader sees a whole entry or none; an entry that is still unreadable (killed mid-write on some
filesystems, disk errors, edited by hand) is deleted and recomputed, never trusted. Recency is the
file's mtime, touched on every hit; the budget is enforced against the entries this process has
seen (those on disk when it first looked, plus its own writes), so concurrent writers may overshoot
it briefly.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
import uuid
from collections import OrderedDict
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

_KEY = re.compile(r"^[0-9a-f]{16,128}$")  # content hashes (sha256 hex); never a path
_STALE_TEMP_SECONDS = 3600  # a temporary file this old belongs to a writer that died


class FeatureCache:
    def __init__(self, directory: Path, max_bytes: int, shape: tuple[int, ...], dtype: np.dtype):
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self._entries: OrderedDict[str, int] | None = None  # key -> bytes, least recently used first
        self._bytes = 0
        self._lock = threading.Lock()

    # ---- public ---------------------------------------------------------------------------------
    @property
    def total_bytes(self) -> int:
        with self._lock:
            self._load_index()
            return self._bytes

    def __len__(self) -> int:
        with self._lock:
            return len(self._load_index())

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._load_index()

    def get(self, key: str) -> np.ndarray | None:
        """The features stored under ``key``, or None when absent or unusable (then deleted)."""
        with self._lock:
            entries = self._load_index()
            if key not in entries:
                return None
            path = self._path(key)
            try:
                features = np.load(path, allow_pickle=False)
            except (OSError, ValueError, EOFError) as error:
                self._drop(key, f"unreadable ({error})")
                return None
            if features.shape != self.shape or features.dtype != self.dtype:
                found = f"{features.shape} {features.dtype}"
                self._drop(key, f"holds {found}, expected {self.shape} {self.dtype}")
                return None
            entries.move_to_end(key)
            with contextlib.suppress(OSError):
                os.utime(path)
            return features

    def put(self, key: str, features: np.ndarray) -> bool:
        """Store ``features``; False when they cannot be kept (budget 0, too big, not finite)."""
        if not _KEY.match(key):
            raise ValueError(f"cache keys are lowercase hex content hashes, got {key!r}")
        with np.errstate(over="ignore"):  # values beyond float16's range are refused just below
            features = np.ascontiguousarray(features, dtype=self.dtype)
        if features.shape != self.shape:
            raise ValueError(f"features of shape {features.shape}, expected {self.shape}")
        if features.nbytes > self.max_bytes or not np.isfinite(features).all():
            return False
        path = self._path(key)
        temp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        with self._lock:
            entries = self._load_index()
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(temp, "wb") as handle:
                    np.save(handle, features, allow_pickle=False)
                os.replace(temp, path)
                size = path.stat().st_size
            except OSError as error:  # a full or read-only disk costs speed, never the search
                log.warning("cannot write re-ranker cache entry %s: %s", path, error)
                temp.unlink(missing_ok=True)
                return False
            self._bytes += size - entries.pop(key, 0)
            entries[key] = size
            self._evict()
        return True

    # ---- internals (called with the lock held) -------------------------------------------------
    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.npy"

    def _load_index(self) -> OrderedDict[str, int]:
        """Scan the directory once: entries by mtime (oldest first); dead writers' temp files go."""
        if self._entries is not None:
            return self._entries
        found: list[tuple[float, str, int]] = []
        now = time.time()
        if self.directory.is_dir():
            for shard in os.scandir(self.directory):
                if not shard.is_dir():
                    continue
                for entry in os.scandir(shard.path):
                    try:
                        stat = entry.stat()
                    except OSError:
                        continue
                    if entry.name.endswith(".tmp"):
                        if now - stat.st_mtime > _STALE_TEMP_SECONDS:
                            Path(entry.path).unlink(missing_ok=True)
                    elif entry.name.endswith(".npy") and _KEY.match(entry.name[:-4]):
                        found.append((stat.st_mtime, entry.name[:-4], stat.st_size))
        found.sort()
        self._entries = OrderedDict((key, size) for _, key, size in found)
        self._bytes = sum(self._entries.values())
        self._evict()
        return self._entries

    def _drop(self, key: str, reason: str) -> None:
        log.warning("dropping re-ranker cache entry %s: %s", key, reason)
        self._path(key).unlink(missing_ok=True)
        self._bytes -= self._load_index().pop(key, 0)

    def _evict(self) -> None:
        while self._bytes > self.max_bytes and self._entries:
            key, size = self._entries.popitem(last=False)
            self._path(key).unlink(missing_ok=True)
            self._bytes -= size
