"""Sharded search in the product: with ``ray_address`` set (``PIXSEEK_RAY_ADDRESS``, ``search
--ray-address``), a library's searches rank with the collection's shards on a Ray cluster instead
of its local FAISS index.

* **SQL is the source of truth.** Each shard (:class:`~pixseek.distributed.sharded_search.ShardServer`)
  reads its share of the stored embeddings itself, holds a copy of them in memory and builds the
  index one box would build for that many vectors (exact below the merge threshold, then ``Flat``,
  ``IVF``, ``IVF-PQ``... tuned to the recall target), with the library's index settings.
* **Only the indexing process writes.** Indexing stays local: ``pixseek index``, a server's index
  jobs and its watcher write SQL and the local index folder exactly as without Ray. Shards never
  write anything; they only read SQL (their own connection, from each shard's node).
* **Shards catch up on search.** Before each search :class:`ShardedSearch` reads the collection's
  generation from SQL (one indexed query); when it moved past what the shards reached, every
  shard applies its share of the changes from the change log (:meth:`VectorIndex.follow`, an
  id-set comparison when the log no longer reaches back) and starts the base rebuild that made
  due, as a server worker follows the writer. So a search after an indexing run sees its images,
  for a price of one Ray round per change, not per search. Another collection (dropped and built
  again, or another one activated) gets new shards.
* **Ray is imported on first use**, so a library without ``ray_address`` never loads it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from pixseek.distributed import connect
from pixseek.errors import PixseekError

if TYPE_CHECKING:
    from pixseek.distributed.sharded_search import ShardedIndex
    from pixseek.embedding import Encoder
    from pixseek.library import Library
    from pixseek.media.files import FileOpener
    from pixseek.search.searcher import Searcher
    from pixseek.store.records import CollectionInfo

log = logging.getLogger(__name__)

LOCAL = "local"  # ray_address meaning: start a Ray on this machine for the process (tests, laptops)


def ray_connect(address: str):
    """Join the cluster at ``address`` (``auto``, ``HOST:6379``, ``ray://HOST:10001``), or with
    ``local`` start a Ray on this machine; a no-op when this process is already connected. An
    unreachable cluster is a one-line error naming the address."""
    try:
        return connect(None if address == LOCAL else address)
    except (ConnectionError, TimeoutError) as error:
        raise PixseekError(f"cannot reach the Ray cluster at {address!r} (ray_address): {error}") from None


def sharded_vectors(
    library: Library,
    collection: CollectionInfo,
    address: str,
    *,
    num_shards: int | None = None,
    num_cpus: float = 1.0,
) -> ShardedIndex:
    """Connect to the cluster at ``address``, start the shard actors of ``collection`` and load each
    from the store; the ShardedIndex returned is in step with SQL as of now.

    ``num_shards``: default one per live node of the cluster, the actors spread over the nodes (Ray's
    SPREAD). ``num_cpus``: what each shard reserves from Ray's scheduler. Shards plan, tune and
    maintain their index with the library's index settings (type, memory budget, recall target,
    overrides), the memory budget defaulting to half the free memory of each shard's node."""
    from pixseek.distributed.sharded_search import ShardedIndex
    from pixseek.service.index_files import index_options

    ray = ray_connect(address)
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    shards = num_shards or max(1, len(nodes))
    database_url = library.settings.resolved_database_url
    if database_url.startswith("sqlite") and len(nodes) > 1:
        log.warning("SQLite is only safe on one node: every Ray node must reach the same database file")
    options = index_options(library.settings, library.background_maintenance)
    index = ShardedIndex.create(collection.dim, shards, num_cpus=num_cpus, options=options, spread=True)
    try:
        index.load_from_store(database_url, collection.id)
    except BaseException:
        index.shutdown()
        raise
    log.info(
        "sharded search of %r: %d vectors in %d shards (%s)",
        collection.name,
        len(index),
        shards,
        ", ".join(shard.type for shard in index.describe()),
    )
    return index


class ShardedSearch:
    """The :class:`~pixseek.search.vector_search.VectorSearch` a library's searches use when
    ``ray_address`` is set: the shards of one collection, started on first use and caught up with
    SQL before each search. Thread-safe; a server's request threads share one."""

    def __init__(
        self,
        library: Library,
        collection: CollectionInfo,
        address: str,
        *,
        num_shards: int | None = None,
        num_cpus: float = 1.0,
    ):
        self._library = library
        self.collection_id = collection.id
        self.dim = collection.dim
        self.address = address
        self._collection = collection
        self._num_shards, self._num_cpus = num_shards, num_cpus
        self._lock = threading.Lock()
        self._index: ShardedIndex | None = None
        self._searcher: tuple[tuple[int, Callable[[], Encoder]], Searcher] | None = None

    @property
    def index(self) -> ShardedIndex:
        """The shards, started and loaded now if need be, caught up with SQL."""
        with self._lock:
            if self._index is None:
                self._index = sharded_vectors(
                    self._library,
                    self._collection,
                    self.address,
                    num_shards=self._num_shards,
                    num_cpus=self._num_cpus,
                )
            else:
                current = self._library.store.generation(self.collection_id)
                if current is not None and current != self._index.generation:
                    added, removed = self._index.catch_up()
                    log.info(
                        "shards caught up to generation %d: +%d -%d", self._index.generation, added, removed
                    )
            return self._index

    @property
    def generation(self) -> int:
        """The store generation the shards have reached (-1 before they start)."""
        return self._index.generation if self._index is not None else -1

    def __len__(self) -> int:
        return len(self.index)

    def search(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        return self.index.search(queries, k, allowed_ids)

    def searcher(
        self, collection: CollectionInfo, encoder: Callable[[], Encoder], opener: FileOpener
    ) -> Searcher:
        """A searcher of the shards, kept while the collection's generation and the encoder stay
        the same (a server's: its cutoff's background sample is drawn once, not per request)."""
        from pixseek.search.searcher import Searcher

        key = (collection.generation, encoder)
        with self._lock:
            if self._searcher is None or self._searcher[0] != key:
                self._searcher = (key, Searcher(self._library.store, collection, self, encoder, opener))
            return self._searcher[1]

    def close(self) -> None:
        """Stop the shard actors (the Ray connection stays, for the process's other work)."""
        with self._lock:
            if self._index is not None:
                self._index.shutdown()
                self._index = None
