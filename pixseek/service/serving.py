"""What a long-running server's library shares between request threads, loaded once.

A CLI run searches once and exits; a server answers many concurrent searches and runs indexing
jobs or a watcher beside them, so its library keeps one model for all of them, one searcher whose
text queries share model forwards (:class:`TextQueryBatcher`) and whose unfiltered searches share
FAISS calls (:class:`VectorSearchBatcher`), the re-rankers it was started with, and one lock that
lets a single re-ranking run at a time (each already uses every core, and the feature cache's LRU
bookkeeping is per process). Searches carry all their parameters in arguments, so nothing here is
per-request state.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pixseek.errors import PixseekError
from pixseek.search.batching import TextQueryBatcher, VectorSearchBatcher
from pixseek.search.searcher import Searcher
from pixseek.store.records import CollectionInfo, SearchFilters

if TYPE_CHECKING:
    from pixseek.embedding import Encoder
    from pixseek.indexer.pipeline import IndexReport
    from pixseek.indexer.text_reading import TextReader
    from pixseek.indexer.watch import Watcher
    from pixseek.library import Library
    from pixseek.search.rerank import CachedScorer
    from pixseek.service.text_reading import OcrChoice


class Serving:
    """The caches of ``library`` (which owns this and closes it) while it serves requests."""

    def __init__(self, library: Library):
        self._library = library
        self._lock = threading.RLock()
        self._encoder: Encoder | None = None
        self._text_batcher: TextQueryBatcher | None = None
        self._search_batcher: VectorSearchBatcher | None = None
        self._searcher: Searcher | None = None
        self._scorers: dict[str, CachedScorer] = {}
        self._counts: tuple[tuple[int, tuple[str, ...]], int, int] | None = None  # (key, under, indexed)
        self.rerank_lock = threading.Lock()

    def close(self) -> None:
        for batcher in (self._text_batcher, self._search_batcher):
            if batcher is not None:
                batcher.close()

    def warm_up(self) -> None:
        """Load the model, the index and the re-rankers now, not on the first user's request."""
        library = self._library
        if library.store.collection(library.collection_name) is not None:
            self.searcher()
            self.query_encoder()
        self.scorers(library.rerank_kinds())

    @property
    def loaded_encoder(self) -> Encoder | None:
        """The encoder if it is loaded already (a status report must not load it)."""
        return self._encoder

    def encoder(self) -> Encoder:
        """The collection's own model (checked), or for a collection not created yet the configured
        one: what searches, indexing jobs and the watcher all use."""
        with self._lock:
            if self._encoder is None:
                library = self._library
                collection = library.store.collection(library.collection_name)
                self._encoder = library.encoder_for(collection) if collection else library.load_encoder()
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
                collection = self._library.collection()
                self._searcher = Searcher(
                    self._library.store,
                    collection,
                    self._vector_search(collection),
                    self.query_encoder,
                    self._library.file_opener(),
                )
            return self._searcher

    def forget_searcher(self) -> None:
        """After an indexing job the collection may be new; the next search rebuilds the (cheap)
        searcher."""
        with self._lock:
            self._searcher = None

    def index(
        self,
        paths: Sequence[Path | str],
        *,
        follow_symlinks: bool = True,
        progress: Callable[[int, int], None] | None = None,
    ) -> IndexReport:
        """Index ``paths`` (folders or files) with the shared model, reading files through the
        library's opener: new and changed files embedded, moved ones matched, vanished ones removed."""
        indexer = self._library.indexer(self.encoder())
        return indexer.run([Path(p) for p in paths], follow_symlinks=follow_symlinks, progress=progress)

    def set_ocr(self, choice: OcrChoice) -> TextReader | None:
        """Record ``choice`` on the collection (creating it with the shared model if need be);
        the engine later runs read with (None: OCR off)."""
        collection = self._library.ocr_collection(self.encoder(), choice)
        return self._library.text_reader(collection)

    def watcher(
        self, roots: Sequence[Path], *, follow_symlinks: bool = True, force_polling: bool = False
    ) -> Watcher:
        """A watcher that keeps ``roots`` in step with the collection once its ``run`` starts: it
        indexes with the shared model and leaves the data directory out."""
        from pixseek.indexer.watch import Watcher, WatchOptions

        options = WatchOptions(follow_symlinks=follow_symlinks, force_polling=force_polling)
        data_dir = self._library.settings.data_dir
        return Watcher(self._library.indexer(self.encoder()), roots, options, data_dir=data_dir)

    def _vector_search(self, collection: CollectionInfo) -> VectorSearchBatcher:
        """The collection's index behind a batcher: concurrent searches share FAISS calls. One per
        index object (a rebuild from scratch loads a new one)."""
        vectors = self._library.vectors(collection)
        if self._search_batcher is None or self._search_batcher.vectors is not vectors:
            if self._search_batcher is not None:
                self._search_batcher.close()
            self._search_batcher = VectorSearchBatcher(vectors)
        return self._search_batcher

    def scorers(self, kinds: Sequence[str]) -> list[CachedScorer]:
        """The loaded re-rankers of ``kinds``. A server offers only those it was started with
        (``serve --rerank``): loading another on a request would stall every search for minutes."""
        offered = self._library.rerank_kinds()
        missing = [kind for kind in kinds if kind not in offered]
        if missing:
            raise PixseekError(
                f"re-ranker {', '.join(missing)} is not loaded on this server (offered: "
                f"{', '.join(offered) or 'none'}; start it with pixseek serve --rerank ...)"
            )
        with self._lock:
            for kind in kinds:
                if kind not in self._scorers:
                    self._scorers[kind] = self._library.scorer(kind)
            return [self._scorers[kind] for kind in kinds]

    def counts(self, folders: Sequence[str]) -> tuple[int, int]:
        """(indexed images under ``folders``, indexed images in the collection). Counted again only
        when the index changes: every open web page asks the server's status every few seconds."""
        searcher = self.searcher()
        generation = self._library.vectors(searcher.collection).generation
        key = (generation, tuple(folders))
        if self._counts is None or self._counts[0] != key:
            store, collection_id = self._library.store, searcher.collection.id
            under = len(store.filtered_ids(collection_id, SearchFilters(folders=key[1]))) if folders else 0
            self._counts = (key, under, store.stats(collection_id).indexed)
        return self._counts[1], self._counts[2]
