"""One entry point for the CLI, the API and library users: settings in, store, index and model out.

It owns the rule that a collection is bound to one model: indexing creates or checks the binding,
searching loads the model the collection was built with.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from pixseek.config import Settings
from pixseek.embedding import DualEncoder, load_encoder
from pixseek.errors import NotFoundError, PixseekError
from pixseek.indexer.pipeline import Indexer
from pixseek.search.searcher import Searcher
from pixseek.store.repository import CollectionInfo, CollectionMismatchError, Store
from pixseek.store.vector_index import VectorIndex

_COLLECTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class Library:
    def __init__(self, settings: Settings | None = None):
        self.settings = settings or Settings()
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
    def index_path(self, collection: CollectionInfo) -> Path:
        return self.settings.index_dir / f"{collection.name}.faiss"

    @property
    def loaded_vectors(self) -> VectorIndex | None:
        """The index if this process already loaded it (metrics must not trigger a load)."""
        return self._vectors

    def vectors(self, collection: CollectionInfo) -> VectorIndex:
        """The collection's FAISS index, loaded once and reconciled with SQL."""
        if self._vectors is None:
            vectors = VectorIndex.load(self.index_path(collection), collection.dim)
            added, removed = vectors.reconcile(self.store, collection)
            if added or removed:
                vectors.save(self.index_path(collection))
            self._vectors = vectors
        return self._vectors

    def rebuild_vectors(self, collection: CollectionInfo) -> VectorIndex:
        self._vectors = VectorIndex.rebuild(self.store, collection)
        self._vectors.save(self.index_path(collection))
        return self._vectors

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
            save_vectors=lambda: vectors.save(self.index_path(collection)),
        )

    def searcher(self, model: str | None = None) -> Searcher:
        collection = self.collection()
        encoder = functools.cache(lambda: self.encoder_for(collection, model))
        return Searcher(self.store, collection, self.vectors(collection), encoder)
