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
from pixseek.errors import PixseekError
from pixseek.indexer.pipeline import IndexReport
from pixseek.indexer.watch import Watcher, WatchOptions
from pixseek.library import Library
from pixseek.media.files import FileOpener
from pixseek.search.batching import TextQueryBatcher, VectorSearchBatcher
from pixseek.search.rerank.scorer import CachedScorer
from pixseek.search.searcher import Searcher
from pixseek.store.repository import SearchFilters


class AppState:
    def __init__(self, settings: ServerSettings):
        self.settings = settings
        self.roots = LibraryRoots(settings.library_roots)
        self.library = Library(settings, background_maintenance=True)
        # Every file the server reads or serves is opened through this: beneath a root, no symlink
        # followed on the way, checked on the open descriptor (a path checked, then opened again by
        # name, can be swapped for a link out of the root in between).
        self.files = FileOpener(tuple(self.roots.paths), settings.max_file_bytes)
        self.thumbnails = ThumbnailCache(settings.data_dir / "thumbnails", self.files)
        self._lock = threading.RLock()
        self._encoder: DualEncoder | None = None
        self._text_batcher: TextQueryBatcher | None = None
        self._search_batcher: VectorSearchBatcher | None = None
        self._scorers: dict[str, CachedScorer] = {}
        # One re-ranking at a time: each already uses every core, and the feature cache's LRU
        # bookkeeping is per process.
        self.rerank_lock = threading.Lock()
        self._searcher: Searcher | None = None
        self._counts: tuple[int, int, int] | None = None  # (generation, under the roots, in the collection)
        self.jobs = JobManager(self._run_index, on_finished=self._forget_searcher)
        self.watcher: Watcher | None = None
        self._watch_thread: threading.Thread | None = None

    def close(self) -> None:
        if self.watcher is not None and self._watch_thread is not None:
            self.watcher.stop()
            self._watch_thread.join(timeout=30)
        self.jobs.close()
        for batcher in (self._text_batcher, self._search_batcher):
            if batcher is not None:
                batcher.close()
        self.library.close()

    @property
    def rerankers(self) -> tuple[str, ...]:
        """The re-rankers this server offers: the ones ``settings.rerank`` names."""
        return self.library.rerank_kinds()

    def scorers(self, choice: str) -> list[CachedScorer]:
        kinds = self.library.rerank_kinds(choice)
        missing = [kind for kind in kinds if kind not in self.rerankers]
        if missing:
            offered = ", ".join(self.rerankers) or "none"
            raise PixseekError(
                f"re-ranker {', '.join(missing)} is not loaded on this server (offered: {offered}; "
                "start it with pixseek serve --rerank ...)"
            )
        with self._lock:
            for kind in kinds:
                if kind not in self._scorers:
                    self._scorers[kind] = self.library.scorer(kind, self.files)
            return [self._scorers[kind] for kind in kinds]

    def warm_up(self) -> None:
        """Load the models and index at start-up, not on the first user's request; start watching."""
        if self.library.store.collection(self.settings.collection) is not None:
            self.searcher()
            self.query_encoder()
        for kind in self.rerankers:
            self.scorers(kind)
        if self.settings.watch and self.roots:
            options = WatchOptions(follow_symlinks=False, force_polling=self.settings.watch_poll)
            self.watcher = Watcher(
                self.library.indexer(self.encoder(), self.files),
                [Path(root) for root in self.roots.paths],
                options,
                data_dir=self.settings.data_dir,
            )
            self._watch_thread = threading.Thread(target=self.watcher.run, name="pixseek-watch", daemon=True)
            self._watch_thread.start()

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
                    self.library.store, collection, self.vector_search(collection), self.query_encoder
                )
            return self._searcher

    def vector_search(self, collection) -> VectorSearchBatcher:
        """The collection's index behind a batcher: concurrent searches share FAISS calls. One per
        index object (a rebuild from scratch loads a new one)."""
        vectors = self.library.vectors(collection)
        if self._search_batcher is None or self._search_batcher.vectors is not vectors:
            if self._search_batcher is not None:
                self._search_batcher.close()
            self._search_batcher = VectorSearchBatcher(vectors)
        return self._search_batcher

    def _forget_searcher(self) -> None:
        """After a job the collection may be new; the next search rebuilds the (cheap) searcher."""
        with self._lock:
            self._searcher = None

    def _run_index(self, paths: list[str], progress) -> IndexReport:
        if self.watcher is not None:  # one writer per collection: the watcher rescans for the job
            tickets = [self.watcher.rescan(path) for path in paths]
            total = IndexReport()
            for ticket in tickets:
                ticket.done.wait()
                if ticket.error is not None or ticket.report is None:
                    raise PixseekError(ticket.error or "the watcher stopped before this rescan ran")
                total.merge(ticket.report)
            return total
        indexer = self.library.indexer(self.encoder(), self.files)
        return indexer.run([Path(p) for p in paths], follow_symlinks=False, progress=progress)

    def scope(self, folders: list[str]) -> tuple[str, ...]:
        """Folders a search may return images from: the requested ones (validated), or every root
        when the collection also holds images indexed elsewhere (e.g. by the CLI)."""
        if folders:
            return tuple(self.roots.resolve(folder) for folder in folders)
        searchable, indexed = self.counts()
        return tuple(self.roots.paths) if searchable != indexed else ()

    def counts(self) -> tuple[int, int]:
        """(indexed images under the served roots, indexed images in the collection). Counted again
        only when the index changes: every open web page asks /status every few seconds."""
        searcher = self.searcher()
        generation = self.library.vectors(searcher.collection).generation
        if self._counts is None or self._counts[0] != generation:
            store, collection_id = self.library.store, searcher.collection.id
            under_roots = SearchFilters(folders=tuple(self.roots.paths))
            inside = len(store.filtered_ids(collection_id, under_roots)) if self.roots else 0
            self._counts = (generation, inside, store.stats(collection_id).indexed)
        return self._counts[1], self._counts[2]

    def served(self, counts: tuple[int, int] | None) -> str:
        """One sentence for /status: what a search here can return, and why not more."""
        if not self.roots:
            return "nothing is served: no library roots are configured (pixseek serve --root PATH)"
        where = f"images under the library roots {', '.join(self.roots.by_name)}"
        if counts is None:
            return f"{where}; nothing is indexed yet (POST /index)"
        searchable, indexed = counts
        note = f"{where}: {searchable} of the collection's {indexed} indexed images"
        if indexed > searchable:
            note += f"; the other {indexed - searchable} were indexed from folders this server does not serve"
        return note
