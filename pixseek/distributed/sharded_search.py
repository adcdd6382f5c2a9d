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

A shard loaded from the store (:meth:`ShardServer.load_from_store`) is a local collection's index
in miniature: its vector source is its own share of the stored embeddings (:class:`ShardStore`, the
store filtered by :func:`shard_of`), so it plans, builds and tunes its base exactly as one box does
(:meth:`VectorIndex.rebuild`: exact below the merge threshold, ``Flat``, ``IVF``, ``IVF-PQ``... by
its own size and its node's memory), re-ranks IVF-PQ candidates from SQL, follows the change log
(:meth:`VectorIndex.follow`) and rebuilds its base when its delta or tombstones grow
(:meth:`VectorIndex.maintain`). Shards only read SQL; whoever indexes writes it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine

from pixseek.distributed import connect
from pixseek.store.ann.topk import EMPTY_ID, merge_top_k
from pixseek.store.change_log import VectorChanges
from pixseek.store.index_options import IndexOptions
from pixseek.store.records import CollectionInfo, IndexDescription
from pixseek.store.repository import Store
from pixseek.store.vector_index import VectorIndex


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


class ShardStore(Store):
    """The store as one shard sees it: the vector reads (indexed ids, embeddings, the change log)
    keep only the ids of ``shard``; everything else is the store's. What a shard's VectorIndex builds
    its base from, re-ranks from and follows, so it holds and plans for its share only."""

    def __init__(self, engine: Engine, shard: int, num_shards: int):
        super().__init__(engine)
        self.shard, self.num_shards = shard, num_shards

    def _mine(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        return ids[shard_of(ids, self.num_shards) == self.shard]

    def indexed_ids(self, collection_id: int) -> np.ndarray:
        return self._mine(super().indexed_ids(collection_id))

    def embeddings(self, ids: Sequence[int], dim: int) -> tuple[np.ndarray, np.ndarray]:
        return super().embeddings(self._mine(np.asarray(ids, dtype=np.int64)).tolist(), dim)

    def iter_embeddings(
        self, collection_id: int, dim: int, chunk: int = 10_000
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        # Every shard scans the whole table (in parallel) and keeps its share: no shard column in SQL.
        for ids, vectors in super().iter_embeddings(collection_id, dim, chunk):
            mine = shard_of(ids, self.num_shards) == self.shard
            if mine.any():
                yield ids[mine], vectors[mine]

    def changes_since(self, collection_id: int, since: int, through: int) -> VectorChanges | None:
        changes = super().changes_since(collection_id, since, through)
        if changes is None:
            return None
        return VectorChanges(
            changes.since, changes.through, self._mine(changes.added), self._mine(changes.removed)
        )


class ShardServer:
    """One shard: a VectorIndex of the vectors whose id hashes to it. Runs as a Ray actor.

    Filled either by :meth:`add` (vectors sent to it; no source, so it stays exact) or by
    :meth:`load_from_store` (its share read from SQL, planned and tuned like one box's index, then
    kept in step by :meth:`catch_up`)."""

    def __init__(self, dim: int, shard: int, num_shards: int, options: IndexOptions | None = None):
        self.dim = dim
        self.shard = shard
        self.num_shards = num_shards
        self.options = options  # how a loaded shard's index is planned, tuned and maintained
        self.index = VectorIndex(dim)
        self.store: ShardStore | None = None  # set by load_from_store: what the index reads
        self.collection: CollectionInfo | None = None

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
        self._close_store()

    def _close_store(self) -> None:
        if self.store is not None:
            self.store.close()
        self.store, self.collection = None, None

    def load_from_store(self, database_url: str, collection_id: int) -> int:
        """Replace this shard's vectors with its share of the store's, as one box rebuilds its
        index (:meth:`VectorIndex.rebuild`): a base planned and tuned for the share's size when it
        is past the exact-search threshold, else the exact delta alone. Every shard scans the
        embeddings once (in parallel), so the driver never holds the collection. The shard keeps
        its read-only connection: its index re-ranks, rebuilds and catches up from it."""
        from pixseek.store.database import create_store_engine

        self.clear()
        store = ShardStore(create_store_engine(database_url), self.shard, self.num_shards)
        try:
            collection = next(c for c in store.collections() if c.id == collection_id)
            if collection.dim != self.dim:
                raise ValueError(
                    f"collection {collection.name!r} has {collection.dim}-d vectors, not {self.dim}"
                )
            # The generation is read before the embeddings: what is written meanwhile, catch_up sees.
            self.index = VectorIndex.rebuild(store, collection, self.options)
        except BaseException:
            store.close()
            raise
        self.store, self.collection = store, collection
        return len(self.index)

    def catch_up(self) -> tuple[int, int, int]:
        """Bring a loaded shard in step with SQL: the changes past its generation from the change
        log (or an id-set comparison when the log does not reach back), then the base rebuild that
        the local index would start now (in a thread when the options say background).
        Returns (added, removed, generation); a shard filled by :meth:`add` has nothing to follow."""
        if self.store is None or self.collection is None:
            return 0, 0, self.index.generation
        added, removed = self.index.follow(self.store, self.collection)
        self.index.maintain()
        return added, removed, self.index.generation

    def generation(self) -> int:
        return self.index.generation

    def describe(self) -> IndexDescription:
        """The shard's index as `pixseek status` describes one box's: kind, sizes, tuned recall."""
        return self.index.describe()

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
        self.generation = -1  # the store generation every shard has reached (load, catch_up)
        # Shard sizes as of this client's last change: only this client changes its shards, and a
        # search asks len() (the cutoff, the searcher), which must not cost a Ray round trip.
        self._sizes: list[int] | None = None

    @property
    def num_shards(self) -> int:
        return len(self.actors)

    @classmethod
    def create(
        cls,
        dim: int,
        num_shards: int,
        *,
        address: str | None = None,
        num_cpus: float = 0.5,
        options: IndexOptions | None = None,
        spread: bool = False,
    ) -> ShardedIndex:
        """Start ``num_shards`` empty shard actors. ``num_cpus`` is what each reserves from Ray's
        scheduler (not a thread limit): FAISS in a shard uses the cores of its node. ``options``:
        how shards loaded from the store plan, tune and maintain their index (default: one box's
        defaults). ``spread``: place the shards on as many nodes as possible (Ray's SPREAD)."""
        if num_shards < 1:
            raise ValueError(f"num_shards must be at least 1, got {num_shards}")
        ray = connect(address)
        placement: dict[str, Any] = {"scheduling_strategy": "SPREAD"} if spread else {}
        remote = ray.remote(num_cpus=num_cpus, **placement)(ShardServer)
        return cls(dim, [remote.remote(dim, shard, num_shards, options) for shard in range(num_shards)])

    @classmethod
    def from_store(
        cls, database_url: str, collection_id: int, dim: int, num_shards: int, **options: Any
    ) -> ShardedIndex:
        """Shards of a stored collection, each loading its vectors from the database itself."""
        index = cls.create(dim, num_shards, **options)
        index.load_from_store(database_url, collection_id)
        return index

    def load_from_store(self, database_url: str, collection_id: int) -> None:
        """(Re)load every shard from the store, in parallel: each reads its share and builds the
        index one box would build for that many vectors (see :class:`ShardServer`)."""
        import ray

        self._sizes = ray.get(
            [actor.load_from_store.remote(database_url, collection_id) for actor in self.actors]
        )
        self.generation = min(ray.get([actor.generation.remote() for actor in self.actors]))

    def catch_up(self) -> tuple[int, int]:
        """Every loaded shard applies the changes past its generation from the change log (and
        starts a base rebuild if that made one due), in parallel: (added, removed) over all shards."""
        import ray

        done = ray.get([actor.catch_up.remote() for actor in self.actors])
        self.generation = min(generation for _, _, generation in done)
        self._sizes = None
        return sum(added for added, _, _ in done), sum(removed for _, removed, _ in done)

    def describe(self) -> list[IndexDescription]:
        """Each shard's index, as `pixseek status` describes one box's."""
        import ray

        return ray.get([actor.describe.remote() for actor in self.actors])

    def clear(self, dim: int | None = None) -> None:
        import ray

        self.dim = dim or self.dim
        ray.get([actor.clear.remote(self.dim) for actor in self.actors])
        self._sizes = [0] * self.num_shards
        self.generation = -1

    def add(self, ids: np.ndarray, vectors: np.ndarray, generation: int = -1) -> None:
        """Route rows to their shards (each shard receives only its own rows)."""
        import ray

        ids = np.asarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        shards = shard_of(ids, self.num_shards)
        self._sizes = ray.get(
            [
                actor.add.remote(ids[shards == shard], vectors[shards == shard], generation)
                for shard, actor in enumerate(self.actors)
            ]
        )
        self.generation = generation

    def sizes(self) -> list[int]:
        """Each shard's vector count, asked now."""
        import ray

        self._sizes = ray.get([actor.size.remote() for actor in self.actors])
        return list(self._sizes)

    def __len__(self) -> int:
        return sum(self._sizes if self._sizes is not None else self.sizes())

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
        self._sizes = []
