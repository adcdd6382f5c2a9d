"""Where an index's vectors come from when it is built, tuned or re-ranks exactly.

SQL is the source of truth (:class:`StoreVectors`); the FAISS files are derived from it. Tests and
benchmarks use :class:`ArrayVectors` (an in-memory or memory-mapped matrix) with the same interface,
so the 10M-vector benchmark runs the production code without a 20 GB database.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from pixseek.store.repository import Store


class VectorSource(Protocol):
    dim: int

    def ids(self) -> np.ndarray:
        """Every id, ascending."""

    def by_ids(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(found ids, float32 vectors) for those of ``ids`` that exist, in any order."""

    def chunks(self, size: int = 50_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every (ids, vectors), in bounded chunks."""


class StoreVectors:
    """A collection's stored embeddings (status indexed) in SQL."""

    def __init__(self, store: Store, collection_id: int, dim: int):
        self.store, self.collection_id, self.dim = store, collection_id, dim

    def ids(self) -> np.ndarray:
        return np.sort(self.store.indexed_ids(self.collection_id))

    def by_ids(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.store.embeddings(np.asarray(ids).tolist(), self.dim)

    def chunks(self, size: int = 50_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return self.store.iter_embeddings(self.collection_id, self.dim, chunk=size)


class ArrayVectors:
    """Vectors held in a matrix (possibly ``np.memmap``), row i having id ``ids[i]``."""

    def __init__(self, ids: np.ndarray, vectors: np.ndarray):
        self._row_ids = np.asarray(ids, dtype=np.int64)
        self._rows = np.argsort(self._row_ids, kind="stable")
        self._ids = self._row_ids[self._rows]
        self._vectors = vectors
        self.dim = int(vectors.shape[1])

    def ids(self) -> np.ndarray:
        return self._ids

    def by_ids(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ids = np.asarray(ids, dtype=np.int64)
        if not len(self._ids):
            return np.empty(0, np.int64), np.empty((0, self.dim), np.float32)
        where = np.searchsorted(self._ids, ids).clip(max=len(self._ids) - 1)
        found = self._ids[where] == ids
        rows = np.sort(self._rows[where[found]])  # memory-mapped reads in file order
        return self._row_ids[rows], np.asarray(self._vectors[rows], dtype=np.float32)

    def chunks(self, size: int = 50_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, len(self._row_ids), size):
            rows = slice(start, start + size)
            yield self._row_ids[rows], np.asarray(self._vectors[rows], dtype=np.float32)
