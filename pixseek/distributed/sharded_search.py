"""Sharded vector search: a collection split by id hash over Ray actors, queries scattered, top-k merged.

Each shard is a Ray actor holding a :class:`~pixseek.store.vector_index.VectorIndex` of its own
vectors, so a shard gets whatever index type that class picks for its size. A query goes to every
shard at once (one ``ray.put`` of the query matrix, one remote call per shard); each shard returns
its own top-k and the driver merges them. The global top-k is always inside the union of the
shards' top-k, so the merge is exact whenever the shards are.

The merge orders by descending inner product (a max-heap, as for ``METRIC_INNER_PRODUCT``; FAISS's
``contrib.client_server.ResultHeap`` defaults to L2 order, which would return the *worst* matches).
Equal scores are listed larger id first, as FAISS's own heap lists them; where a group of equal
scores straddles the k-th place, the smaller ids are kept (FAISS follows no fixed rule there).

Scores are bit-identical to one unsharded exact index for single queries. For a batch FAISS uses
sgemm, whose rounding depends on how many vectors an index holds, so sharded and unsharded scores
then agree to float32 rounding (below 1e-6 at 512-d), and near-ties within it may swap.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pixseek.distributed import connect
from pixseek.store.ann.topk import EMPTY_ID, merge_top_k
from pixseek.store.vector_index import VectorIndex

# Result slots without a vector (a row with fewer candidates than the others), as VectorIndex pads.


def shard_of(ids: np.ndarray, num_shards: int) -> np.ndarray:
    """The shard of each id: splitmix64 of the id, modulo ``num_shards``.

    A hash, not ``id % n``: SQL ids are sequential, so folders indexed together (and deleted
    together) would otherwise follow a pattern across shards. Deterministic across processes and
    machines, unlike Python's salted ``hash``.
    """
    x = np.asarray(ids, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x % np.uint64(num_shards)).astype(np.int64)


class ShardServer:
    """One shard: a VectorIndex of the vectors whose id hashes to it. Runs as a Ray actor."""

    def __init__(self, dim: int, shard: int, num_shards: int):
        self.dim = dim
        self.shard = shard
        self.num_shards = num_shards
        self.index = VectorIndex(dim)

    def add(self, ids: np.ndarray, vectors: np.ndarray, generation: int = -1) -> int:
        """Add the rows of ``ids``/``vectors`` that belong to this shard (callers may send them all)."""
        ids = np.asarray(ids, dtype=np.int64)
        mine = shard_of(ids, self.num_shards) == self.shard
        self.index.update(ids[mine], np.asarray(vectors)[mine], np.empty(0, np.int64), generation)
        return len(self.index)

    def clear(self, dim: int | None = None) -> None:
        """Drop every vector (and switch to ``dim``-d vectors if given): reuse the actor, e.g. for
        another collection, without paying for a new process."""
        self.dim = dim or self.dim
        self.index = VectorIndex(self.dim)

    def load_from_store(self, database_url: str, collection_id: int) -> int:
        """Replace this shard's vectors with its share of the store's: every shard scans the
        embeddings once (in parallel), so the driver never holds the collection."""
        from pixseek.store.database import create_store_engine
        from pixseek.store.repository import Store

        store = Store(create_store_engine(database_url))
        self.clear()
        try:
            collection = next(c for c in store.collections() if c.id == collection_id)
            for ids, vectors in store.iter_embeddings(collection_id, self.dim):
                self.add(ids, vectors, collection.generation)
            self.index.generation = collection.generation
        finally:
            store.close()
        return len(self.index)

    def size(self) -> int:
        return len(self.index)

    def search(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        if len(self.index) == 0:  # nothing to rank (VectorIndex would answer padding slots)
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        return self.index.search(queries, k, allowed_ids)


class ShardedIndex:
    """A client for ``num_shards`` shard actors, with VectorIndex's ``search`` signature.

    Build it with :meth:`create` (empty shards, then :meth:`add`) or :meth:`from_store`.
    """

    def __init__(self, dim: int, actors: Sequence[Any]):
        self.dim = dim
        self.actors = list(actors)

    @property
    def num_shards(self) -> int:
        return len(self.actors)

    @classmethod
    def create(
        cls, dim: int, num_shards: int, *, address: str | None = None, num_cpus: float = 0.5
    ) -> ShardedIndex:
        """Start ``num_shards`` empty shard actors. ``num_cpus`` is what each reserves from Ray's
        scheduler (not a thread limit): FAISS in a shard uses the cores of its node."""
        if num_shards < 1:
            raise ValueError(f"num_shards must be at least 1, got {num_shards}")
        ray = connect(address)
        remote = ray.remote(num_cpus=num_cpus)(ShardServer)
        return cls(dim, [remote.remote(dim, shard, num_shards) for shard in range(num_shards)])

    @classmethod
    def from_store(
        cls, database_url: str, collection_id: int, dim: int, num_shards: int, **options: Any
    ) -> ShardedIndex:
        """Shards of a stored collection, each loading its vectors from the database itself."""
        index = cls.create(dim, num_shards, **options)
        index.load_from_store(database_url, collection_id)
        return index

    def load_from_store(self, database_url: str, collection_id: int) -> None:
        """Reload every shard from the store (after the collection changed, say), in parallel."""
        import ray

        ray.get([actor.load_from_store.remote(database_url, collection_id) for actor in self.actors])

    def clear(self, dim: int | None = None) -> None:
        import ray

        self.dim = dim or self.dim
        ray.get([actor.clear.remote(self.dim) for actor in self.actors])

    def add(self, ids: np.ndarray, vectors: np.ndarray, generation: int = -1) -> None:
        """Route rows to their shards (each shard receives only its own rows)."""
        import ray

        ids = np.asarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        shards = shard_of(ids, self.num_shards)
        ray.get(
            [
                actor.add.remote(ids[shards == shard], vectors[shards == shard], generation)
                for shard, actor in enumerate(self.actors)
            ]
        )

    def sizes(self) -> list[int]:
        import ray

        return ray.get([actor.size.remote() for actor in self.actors])

    def __len__(self) -> int:
        return sum(self.sizes())

    def search(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product over all shards: (nq, min(k, candidates)) arrays, best first, the
        candidates being the indexed vectors (or the indexed ones among ``allowed_ids``); a row with
        fewer candidates than the others ends in (-inf, -1) slots."""
        import ray

        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        query_ref = ray.put(queries)
        if allowed_ids is None:
            refs = [actor.search.remote(query_ref, k, None) for actor in self.actors]
        else:
            allowed_ids = np.asarray(allowed_ids, dtype=np.int64)
            owner = shard_of(allowed_ids, self.num_shards)
            refs = [
                actor.search.remote(query_ref, k, allowed_ids[owner == shard])
                for shard, actor in enumerate(self.actors)
            ]
        results = ray.get(refs)
        scores, ids = merge_top_k(results, k)
        found = sum((result_ids != EMPTY_ID).sum(axis=1) for _, result_ids in results)
        width = min(k, int(np.max(found, initial=0)))
        return scores[:, :width], ids[:, :width]

    def shutdown(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
