"""One entry point for the CLI, the API and library users: settings in, store, index and model out.

It owns the rule that a collection is bound to one model: indexing creates or checks the binding,
searching loads the model the collection was built with.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from pixseek.config import Settings
from pixseek.embedding import DualEncoder, load_encoder
from pixseek.embedding.runtime import resolve_device
from pixseek.errors import NotFoundError, PixseekError
from pixseek.indexer.pipeline import Indexer
from pixseek.search.rerank import (
    BATCH_SIZE,
    RERANKER_KINDS,
    CachedScorer,
    FeatureCache,
    FillReport,
    ImageRef,
    load_reranker,
)
from pixseek.search.searcher import Searcher
from pixseek.store.ann.base import SearchParams
from pixseek.store.ann.plan import parse_bytes
from pixseek.store.ann.source import StoreVectors
from pixseek.store.repository import CollectionInfo, CollectionMismatchError, Store
from pixseek.store.vector_index import IndexOptions, VectorIndex

_COLLECTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
# Candidates re-ranked per text query unless rerank_k says otherwise. On a CPU, cached BLIP-2 costs
# ~60 ms a pair in bf16 (docs/benchmarks.md), so 50 keeps a query within a few seconds; on CUDA the
# 128 of BLIP-2's own retrieval evaluation costs well under a second.
DEFAULT_RERANK_K = {"cpu": 50, "cuda": 128}


class Library:
    def __init__(self, settings: Settings | None = None, *, background_maintenance: bool = False):
        """``background_maintenance``: long-running processes (server, watcher) rebuild the vector
        index's base in a thread while serving; a CLI run rebuilds it before it exits."""
        self.settings = settings or Settings()
        self.background_maintenance = background_maintenance
        if not _COLLECTION_NAME.match(self.settings.collection):
            raise PixseekError(
                f"invalid collection name {self.settings.collection!r}: use letters, digits, '_', '.', '-'"
            )
        self._vectors: VectorIndex | None = None

    @functools.cached_property
    def store(self) -> Store:
        return Store.open(self.settings.resolved_database_url)

    def close(self) -> None:
        if "store" in self.__dict__:
            self.store.close()

    # ---- model and collection ----------------------------------------------------------------
    def load_encoder(self, model: str | None = None) -> DualEncoder:
        return load_encoder(
            model or self.settings.model, device=self.settings.device, precision=self.settings.precision
        )

    def collection(self) -> CollectionInfo:
        """The existing collection; searching an empty library is an error with a next step."""
        info = self.store.collection(self.settings.collection)
        if info is None:
            raise NotFoundError(
                f"no collection {self.settings.collection!r} yet: run `pixseek index PATH` first"
            )
        return info

    def collection_for(self, encoder: DualEncoder) -> CollectionInfo:
        return self.store.ensure_collection(
            self.settings.collection,
            model_id=encoder.model_id,
            fingerprint=encoder.fingerprint,
            dim=encoder.dim,
            precision=encoder.precision,
        )

    def encoder_for(self, collection: CollectionInfo, model: str | None = None) -> DualEncoder:
        """The collection's own model (or ``model`` if it is the same one under another name)."""
        encoder = self.load_encoder(model or collection.model_id)
        if encoder.fingerprint != collection.model_fingerprint or encoder.dim != collection.dim:
            raise CollectionMismatchError(
                f"model {encoder.model_id} (fingerprint {encoder.fingerprint}) is not the model collection "
                f"{collection.name!r} was built with ({collection.model_id}, {collection.model_fingerprint})"
            )
        return encoder

    # ---- vector index ------------------------------------------------------------------------
    def index_path(self, collection: CollectionInfo | str) -> Path:
        name = collection if isinstance(collection, str) else collection.name
        return self.settings.index_dir / name

    def index_options(self) -> IndexOptions:
        s = self.settings
        return IndexOptions(
            kind=s.index_type,
            memory_budget=parse_bytes(s.memory_budget) if s.memory_budget else None,
            recall_target=s.recall_target,
            overrides=SearchParams(nprobe=s.nprobe, ef_search=s.ef_search, k_factor=s.k_factor),
            background=self.background_maintenance,
        )

    @property
    def loaded_vectors(self) -> VectorIndex | None:
        """The index if this process already loaded it (metrics must not trigger a load)."""
        return self._vectors

    def vectors(self, collection: CollectionInfo) -> VectorIndex:
        """The collection's FAISS index, loaded once and reconciled with SQL."""
        if self._vectors is None:
            self.open_vectors(collection)
        return self._vectors

    def open_vectors(self, collection: CollectionInfo) -> tuple[VectorIndex, int, int]:
        """(Re)load the index from disk and bring it in step with SQL: (index, added, removed)."""
        vectors = VectorIndex.load(
            self.index_path(collection),
            collection.dim,
            source=StoreVectors(self.store, collection.id, collection.dim),
            options=self.index_options(),
        )
        added, removed = vectors.reconcile(self.store, collection)
        if added or removed:
            vectors.save(self.index_path(collection))
        self._vectors = vectors
        return vectors, added, removed

    def rebuild_vectors(self, collection: CollectionInfo) -> VectorIndex:
        self._vectors = VectorIndex.rebuild(self.store, collection, self.index_options())
        self._vectors.save(self.index_path(collection))
        return self._vectors

    def save_vectors(self, collection: CollectionInfo) -> None:
        """Persist the index; a long-running process also starts a due base rebuild in the background."""
        vectors = self.vectors(collection)
        if self.background_maintenance:
            vectors.maintain()
        vectors.save(self.index_path(collection))

    def finish_vectors(self, collection: CollectionInfo) -> bool:
        """After a CLI indexing run: build the base the collection's size calls for, then save.
        True if a base was (re)built."""
        vectors = self.vectors(collection)
        rebuilt = vectors.maintain(wait=True)
        vectors.save(self.index_path(collection))
        return rebuilt

    # ---- the two jobs ------------------------------------------------------------------------
    def indexer(self, encoder: DualEncoder) -> Indexer:
        collection = self.collection_for(encoder)
        vectors = self.vectors(collection)
        return Indexer(
            self.store,
            collection,
            vectors,
            encoder,
            batch_size=self.settings.batch_size,
            workers=self.settings.decode_workers,
            save_vectors=lambda: self.save_vectors(collection),
        )

    def searcher(self, model: str | None = None) -> Searcher:
        collection = self.collection()
        encoder = functools.cache(lambda: self.encoder_for(collection, model))
        return Searcher(self.store, collection, self.vectors(collection), encoder)

    # ---- re-ranking ---------------------------------------------------------------------------
    def rerank_kinds(self, choice: str | None = None) -> tuple[str, ...]:
        """The re-rankers a ``--rerank`` choice (default: the setting) names, in a fixed order."""
        choice = choice or self.settings.rerank
        if choice == "none":
            return ()
        if choice == "both":
            return RERANKER_KINDS
        if choice not in RERANKER_KINDS:
            raise PixseekError(f"unknown re-ranker {choice!r}; choose bridgetower, blip2, both or none")
        return (choice,)

    @property
    def rerank_k(self) -> int:
        if self.settings.rerank_k is not None:
            return self.settings.rerank_k
        return DEFAULT_RERANK_K[resolve_device(self.settings.device).type]

    def scorer(self, kind: str) -> CachedScorer:
        """The re-ranker of ``kind`` from its configured checkpoint, with its feature cache."""
        name = self.settings.bridgetower_model if kind == "bridgetower" else self.settings.blip2_model
        reranker = load_reranker(kind, name, device=self.settings.device, precision=self.settings.precision)
        cache = None
        if self.settings.rerank_cache_mb > 0:
            cache = FeatureCache(
                self.settings.rerank_cache_dir / reranker.features_id,
                self.settings.rerank_cache_mb * 2**20,
                reranker.feature_shape,
                reranker.feature_dtype,
            )
        return CachedScorer(reranker, cache)

    def fill_rerank_cache(
        self, scorer: CachedScorer, progress: Callable[[int, int], None] | None = None
    ) -> FillReport:
        """Cache ``scorer``'s image features for the collection's images, up to its byte budget."""
        if scorer.cache is None:
            raise PixseekError("the re-ranker cache is off (rerank_cache_mb is 0); nothing to fill")
        ids = self.store.indexed_ids(self.collection().id).tolist()

        def refs() -> Iterator[ImageRef]:
            for start in range(0, len(ids), 8 * BATCH_SIZE):
                for record in self.store.images(ids[start : start + 8 * BATCH_SIZE]).values():
                    yield ImageRef.from_record(record)

        return scorer.fill(refs(), len(ids), progress)
