"""The seam between search and the vector indexes: what a search asks of one.

Three things answer it: the collection's :class:`pixseek.store.vector_index.VectorIndex`, the
:class:`pixseek.search.batching.VectorSearchBatcher` a server puts in front of it (concurrent
searches share one FAISS call), and :class:`pixseek.distributed.sharded_search.ShardedIndex`
(shards on Ray actors). A searcher takes any of them and cannot tell which.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class VectorSearch(Protocol):
    @property
    def dim(self) -> int:
        """Size of the vectors (and of the queries)."""
        ...

    def __len__(self) -> int:
        """Vectors searchable now."""
        ...

    def search(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (queries x k), best first; ``allowed_ids`` restricts the candidates
        before ranking, so k results come back whenever k allowed vectors exist; -1 ids pad."""
        ...
