"""What one server process holds: settings, roots, the library, one model, one searcher, jobs.

The model and the FAISS index are loaded once and shared by every request thread; searches carry
all their parameters in arguments (no shared mutable search state), and the index is updated in
place under its lock by the indexing job, so searches keep working while a job writes.
"""

from __future__ import annotations

import threading
from pathlib import Path

from pixseek.api.config import ServerSettings
from pixseek.api.jobs import JobManager
from pixseek.api.roots import LibraryRoots
from pixseek.api.thumbnails import ThumbnailCache
from pixseek.embedding import DualEncoder
from pixseek.indexer.pipeline import IndexReport
from pixseek.library import Library
from pixseek.search.batching import TextQueryBatcher
from pixseek.search.searcher import Searcher
from pixseek.store.repository import SearchFilters


class AppState:
    def __init__(self, settings: ServerSettings):
        self.settings = settings
        self.roots = LibraryRoots(settings.library_roots)
        self.library = Library(settings)
        self.thumbnails = ThumbnailCache(settings.data_dir / "thumbnails")
        self._lock = threading.RLock()
        self._encoder: DualEncoder | None = None
        self._text_batcher: TextQueryBatcher | None = None
        self._searcher: Searcher | None = None
        self._outside_roots: tuple[int, bool] | None = None  # (generation, any image outside roots)
        self.jobs = JobManager(self._run_index, on_finished=self._forget_searcher)

    def close(self) -> None:
        self.jobs.close()
        if self._text_batcher is not None:
            self._text_batcher.close()
        self.library.close()

    def warm_up(self) -> None:
        """Load the model and index at start-up, not on the first user's request."""
        if self.library.store.collection(self.settings.collection) is not None:
            self.searcher()
            self.query_encoder()

    @property
    def loaded_encoder(self) -> DualEncoder | None:
        return self._encoder

    def encoder(self) -> DualEncoder:
        with self._lock:
            if self._encoder is None:
                collection = self.library.store.collection(self.settings.collection)
                self._encoder = (
                    self.library.encoder_for(collection) if collection else self.library.load_encoder()
                )
            return self._encoder

    def query_encoder(self) -> TextQueryBatcher:
        """The encoder for search requests: concurrent text queries share forward passes."""
        with self._lock:
            if self._text_batcher is None:
                self._text_batcher = TextQueryBatcher(self.encoder())
            return self._text_batcher

    def searcher(self) -> Searcher:
        with self._lock:
            if self._searcher is None:
                collection = self.library.collection()
                self._searcher = Searcher(
                    self.library.store, collection, self.library.vectors(collection), self.query_encoder
                )
            return self._searcher

    def _forget_searcher(self) -> None:
        """After a job the collection may be new; the next search rebuilds the (cheap) searcher."""
        with self._lock:
            self._searcher = None

    def _run_index(self, paths: list[str], progress) -> IndexReport:
        indexer = self.library.indexer(self.encoder())
        return indexer.run([Path(p) for p in paths], follow_symlinks=False, progress=progress)

    def scope(self, folders: list[str]) -> tuple[str, ...]:
        """Folders a search may return images from: the requested ones (validated), or every root
        when the collection also holds images indexed elsewhere (e.g. by the CLI)."""
        if folders:
            return tuple(self.roots.resolve(folder) for folder in folders)
        searcher = self.searcher()
        generation = searcher.vectors.generation
        if self._outside_roots is None or self._outside_roots[0] != generation:
            store, collection_id = self.library.store, searcher.collection.id
            inside = len(store.filtered_ids(collection_id, SearchFilters(folders=tuple(self.roots.paths))))
            self._outside_roots = (generation, inside != store.stats(collection_id).indexed)
        return tuple(self.roots.paths) if self._outside_roots[1] else ()
