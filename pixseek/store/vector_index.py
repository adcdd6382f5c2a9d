"""The FAISS index of one collection: derived from SQL, saved atomically, reconciled on open.

Exact inner product (``IndexIDMap2`` over ``IndexFlatIP``) on L2-normalised vectors: cosine ranking
with ids equal to SQL row ids. The file on disk records the store generation it reflects; when that
matches SQL the index is used as is, otherwise it is brought back in step from stored embeddings.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import faiss
import numpy as np

if TYPE_CHECKING:
    from pixseek.store.repository import CollectionInfo, Store

log = logging.getLogger(__name__)

GPU_MAX_K = 2048


def gpu_count() -> int:
    """GPUs usable by FAISS: zero unless faiss-gpu is installed and sees a device."""
    get_num_gpus = getattr(faiss, "get_num_gpus", None)
    return get_num_gpus() if get_num_gpus else 0


def _write_atomically(path: Path, write) -> None:
    """Write to a temp file in the same folder, fsync, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class VectorIndex:
    """Thread-safe wrapper: searches and updates may come from different threads (API, watcher)."""

    def __init__(self, dim: int, index: faiss.Index | None = None, generation: int = -1):
        self.dim = dim
        self.index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self.generation = generation
        self._lock = threading.RLock()
        self._gpu_index: faiss.Index | None = None

    # ---- persistence ----------------------------------------------------------------------------
    @staticmethod
    def meta_path(path: Path) -> Path:
        return path.with_name(path.name + ".json")

    @classmethod
    def load(cls, path: Path, dim: int) -> VectorIndex:
        """Load the saved index; a missing, unreadable or wrong-sized file yields an empty one to rebuild."""
        try:
            index = faiss.read_index(str(path))
            meta = json.loads(cls.meta_path(path).read_text())
        except (RuntimeError, OSError, ValueError) as error:
            if path.exists():
                log.warning("vector index %s unreadable (%s); rebuilding it from the store", path, error)
            return cls(dim)
        if index.d != dim:
            log.warning("vector index %s is %d-d, collection is %d-d; rebuilding", path, index.d, dim)
            return cls(dim)
        return cls(dim, index, int(meta.get("generation", -1)))

    def save(self, path: Path) -> None:
        with self._lock:
            _write_atomically(path, lambda tmp: faiss.write_index(self.index, tmp))
            meta = {"generation": self.generation, "ntotal": int(self.index.ntotal), "dim": self.dim}
            # Written after the index: a crash in between leaves an older generation, i.e. a reconcile.
            _write_atomically(self.meta_path(path), lambda tmp: Path(tmp).write_text(json.dumps(meta)))

    # ---- updates -----------------------------------------------------------------------------
    def ids(self) -> np.ndarray:
        with self._lock:
            return faiss.vector_to_array(self.index.id_map).astype(np.int64)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def update(
        self, added_ids: np.ndarray, added_vectors: np.ndarray, removed_ids: np.ndarray, generation: int
    ) -> None:
        with self._lock:
            if len(removed_ids):
                self.index.remove_ids(np.ascontiguousarray(removed_ids, dtype=np.int64))
            if len(added_ids):
                self.index.add_with_ids(
                    np.ascontiguousarray(added_vectors, dtype=np.float32),
                    np.ascontiguousarray(added_ids, dtype=np.int64),
                )
            self.generation = generation
            self._gpu_index = None

    def reconcile(self, store: Store, collection: CollectionInfo) -> tuple[int, int]:
        """Make the index hold exactly the stored embeddings; returns (added, removed) counts."""
        if self.generation == collection.generation:
            return 0, 0
        in_sql = store.indexed_ids(collection.id)
        in_index = self.ids()
        missing = np.setdiff1d(in_sql, in_index, assume_unique=True)
        stale = np.setdiff1d(in_index, in_sql, assume_unique=True)
        ids, vectors = store.embeddings(missing.tolist(), collection.dim) if len(missing) else (missing, None)
        self.update(ids, vectors, stale, collection.generation)
        if len(missing) or len(stale):
            log.info(
                "reconciled vector index: +%d from stored embeddings, -%d stale", len(missing), len(stale)
            )
        return len(missing), len(stale)

    @classmethod
    def rebuild(cls, store: Store, collection: CollectionInfo) -> VectorIndex:
        fresh = cls(collection.dim)
        for ids, vectors in store.iter_embeddings(collection.id, collection.dim):
            fresh.index.add_with_ids(vectors, ids)
        fresh.generation = collection.generation
        return fresh

    # ---- search ------------------------------------------------------------------------------
    def _search_index(self, k: int) -> faiss.Index:
        """A GPU replica for unfiltered search when faiss-gpu sees a GPU; the CPU index stays the truth.
        GPU indexes answer at most k=2048, so larger requests stay on the CPU."""
        if gpu_count() == 0 or self.index.ntotal == 0 or k > GPU_MAX_K:
            return self.index
        if self._gpu_index is None:
            self._gpu_index = faiss.index_cpu_to_all_gpus(self.index)
        return self._gpu_index

    def search(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product; with ``allowed_ids`` only those ids compete, so k results come back
        whenever k allowed vectors exist (filtering before ranking, not after)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        with self._lock:
            if allowed_ids is None:
                k = min(k, int(self.index.ntotal)) or 1
                return self._search_index(k).search(queries, k)
            if len(allowed_ids) == 0:
                empty = np.zeros((len(queries), 0))
                return empty.astype(np.float32), empty.astype(np.int64)
            selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed_ids, dtype=np.int64))
            params = faiss.SearchParameters(sel=selector)
            return self.index.search(queries, min(k, len(allowed_ids)), params=params)
