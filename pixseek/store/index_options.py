"""The knobs of a collection's vector index: which kind, what memory it may take, what recall to
tune for, and when to rebuild its base.

Settings (and benchmarks, tests) build these without touching an index; kept apart from
:class:`pixseek.store.vector_index.VectorIndex`, which only reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pixseek.store.ann.base import SearchParams
from pixseek.store.ann.plan import default_memory_budget


@dataclass(frozen=True)
class IndexOptions:
    """How a collection's index is chosen, tuned, searched and maintained."""

    kind: str = "auto"  # auto | flat | ivf | ivfpq | hnsw
    memory_budget: int | None = None  # bytes for the index; None: half the available memory
    recall_target: float = 0.95
    overrides: SearchParams = field(default_factory=SearchParams)  # beat the tuned parameters
    mmap: bool = True  # map the base read-only instead of reading it into private memory
    background: bool = False  # rebuild the base in a thread (servers, watchers)
    merge_min: int = 20_000  # no base below this many vectors: the delta alone is exact and cheap
    merge_ratio: float = 0.1  # rebuild when delta or tombstones exceed this share of the base
    regrow_ratio: float = 2.0  # retrain when the collection is this many times the trained size

    def budget(self) -> int:
        return self.memory_budget if self.memory_budget is not None else default_memory_budget()
