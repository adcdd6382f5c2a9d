"""The service every front end calls: the CLI, the API, the watcher, evaluation and library users.
Settings in; the store, the vector index, the model and searches out.

It owns the rule that a collection is bound to one model: indexing creates or checks the binding,
every later command (index, watch, search, serve) uses the model the collection was built with
unless told otherwise, and another model is refused. It holds the search flow (first stage, and
re-ranking when asked for) once, so the CLI and the API cannot drift apart.

Heavy modules (torch, transformers, faiss, the re-rankers) are imported by the methods that need
them, so that commands which never run a model (``status``, ``rm``, ``--help``) start in a fraction
of a second. The pieces live in :mod:`pixseek.service`; front ends import only this module, its
result types (re-exported here) and :mod:`pixseek.vocabulary`.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pixseek.config import DEFAULT_COLLECTION, DEFAULT_MODEL, Settings
from pixseek.errors import NotFoundError, PixseekError
from pixseek.indexer.walker import refuse_excluded
from pixseek.lazy import lazy_attributes
from pixseek.service import (
    collections,
    duplicates,
    folders,
    hybrid_search,
    index_files,
    reranking,
    searching,
    summary,
)
from pixseek.service.collections import CollectionEntry
from pixseek.service.duplicates import DuplicateGroup, DuplicateReport
from pixseek.service.folders import Removal
from pixseek.service.images import IndexedImage, indexed_image
from pixseek.service.searching import Listing, SearchOutcome
from pixseek.service.store import open_store
from pixseek.service.summary import CollectionSummary, LiveCollection
from pixseek.service.text_reading import OcrChoice, TextReaders, record_choice
from pixseek.store.database import DatabaseError
from pixseek.store.records import CollectionInfo, IndexDescription, SavedIndexSummary, SearchFilters
from pixseek.store.repository import CollectionMismatchError, Store
from pixseek.vocabulary import Cutoff, SearchMode, SortOrder

if TYPE_CHECKING:
    from PIL import Image

    from pixseek.distributed.sharded_serving import ShardedSearch
    from pixseek.embedding import Encoder
    from pixseek.indexer.pipeline import Indexer, IndexReport
    from pixseek.indexer.text_reading import TextReader
    from pixseek.indexer.watch import Watcher, WatcherState, WatchOptions
    from pixseek.media.files import FileOpener
    from pixseek.search.query import Crop, QueryTerm
    from pixseek.search.rerank import CachedScorer, FillReport, RerankedSearch
    from pixseek.search.searcher import Searcher, SearchHit
    from pixseek.search.vector_search import VectorSearch
    from pixseek.service.serving import Serving
    from pixseek.store.vector_index import VectorIndex

__all__ = [
    "CollectionEntry",
    "CollectionMismatchError",
    "CollectionSummary",
    "DatabaseError",
    "DuplicateGroup",
    "DuplicateReport",
    "FillReport",
    "IndexDescription",
    "IndexReport",
    "IndexedImage",
    "Library",
    "LiveCollection",
    "OcrChoice",
    "Removal",
    "RerankedSearch",
    "SavedIndexSummary",
    "SearchFilters",
    "SearchHit",
    "SearchOutcome",
    "WatchOptions",
    "Watcher",
    "WatcherState",
]

# Types of heavy modules the front ends name: importable from here, loaded on first use.
__getattr__ = lazy_attributes(
    __name__,
    {
        "FillReport": "pixseek.search.rerank.scorer",
        "IndexReport": "pixseek.indexer.pipeline",
        "Watcher": "pixseek.indexer.watch",
        "WatcherState": "pixseek.indexer.watch",
        "WatchOptions": "pixseek.indexer.watch",
        "RerankedSearch": "pixseek.search.rerank.pipeline",
        "SearchHit": "pixseek.search.searcher",
    },
)
_COLLECTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def check_collection_name(name: str) -> str:
    """``name`` if it can name a collection (and its index folder), else a one-line error."""
    if not _COLLECTION_NAME.match(name):
        raise PixseekError(f"invalid collection name {name!r}: use letters, digits, '_', '.', '-'")
    return name


class Library:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        background_maintenance: bool = False,
        serving: bool = False,
        opener: FileOpener | None = None,
    ):
        """``background_maintenance``: long-running processes (server, watcher) rebuild the vector
        index's base in a thread while serving; a CLI run rebuilds it before it exits.
        ``serving``: a server's library, which shares one searcher, its batchers and the re-rankers
        it was started with between request threads, and offers only those re-rankers (it implies
        background maintenance). ``opener``: how image files are read (a server's is confined to its
        library roots); default: anywhere, up to the configured ``max_file_size``."""
        self.settings = settings or Settings()
        self.background_maintenance = background_maintenance or serving
        if self.settings.collection is not None:
            check_collection_name(self.settings.collection)
        self._opener = opener
        self._vectors: VectorIndex | None = None
        self._sharded: ShardedSearch | None = None  # with settings.ray_address: what searches use
        self._sharded_lock = threading.Lock()
        self._search_encoder: tuple[tuple[int, str, str | None], Encoder] | None = None
        self._serving: Serving | None = None
        self._text_readers = TextReaders()
        if serving:
            from pixseek.service.serving import Serving

            self._serving = Serving(self)

    @functools.cached_property
    def collection_name(self) -> str:
        """The collection this library works on: the one named (``-c``), else the active one
        (``pixseek collections activate``), else ``default``. Resolved once: a long-running process
        that must follow activation asks the store itself (pixseek.api.collections)."""
        if self.settings.collection is not None:
            return self.settings.collection
        return self.store.active_collection_name() or DEFAULT_COLLECTION

    @functools.cached_property
    def store(self) -> Store:
        return open_store(self.settings)

    def close(self) -> None:
        if self._serving is not None:
            self._serving.close()
        if self._sharded is not None:
            self._sharded.close()
        self._text_readers.close()
        if "store" in self.__dict__:
            self.store.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ---- model and collection ----------------------------------------------------------------
    def model_name(self) -> str:
        """The model a command loads unless told otherwise: ``--model``/``PIXSEEK_MODEL``, else the
        one the collection was built with, else the default preset."""
        if self.settings.model:
            return self.settings.model
        existing = self.store.collection(self.collection_name)
        return existing.model_id if existing is not None else DEFAULT_MODEL

    def load_encoder(self, model: str | None = None) -> Encoder:
        from pixseek.embedding import load_encoder

        return load_encoder(
            model or self.model_name(),
            device=self.settings.device,
            precision=self.settings.precision,
            runtime=self.settings.image_runtime,
            cache_dir=self.settings.cache_dir,
        )

    def collection(self) -> CollectionInfo:
        info = self.store.collection(self.collection_name)
        if info is None:
            raise NotFoundError(f"no collection {self.collection_name!r} yet: run `pixseek index PATH` first")
        return info

    def collection_for(self, encoder: Encoder) -> CollectionInfo:
        return self.store.ensure_collection(
            self.collection_name,
            model_id=encoder.model_id,
            fingerprint=encoder.fingerprint,
            dim=encoder.dim,
            precision=encoder.precision,
        )

    def encoder_for(self, collection: CollectionInfo, model: str | None = None) -> Encoder:
        """The collection's own model (or ``model`` if it is the same one under another name)."""
        encoder = self.load_encoder(model or collection.model_id)
        if encoder.fingerprint != collection.model_fingerprint or encoder.dim != collection.dim:
            raise CollectionMismatchError(
                f"model {encoder.model_id} (fingerprint {encoder.fingerprint}) is not the model collection "
                f"{collection.name!r} was built with ({collection.model_id}, {collection.model_fingerprint})"
            )
        return encoder

    # ---- the folders a collection was indexed from, and those `rm` keeps out --------------------
    def roots(self, collection: CollectionInfo | None = None) -> list[str]:
        """Folders the collection was indexed from (``serve`` serves these when given no --root)."""
        return folders.roots(self.store, collection or self.store.collection(self.collection_name))

    def exclusions(self, collection: CollectionInfo | None = None) -> list[str]:
        """Paths ``pixseek rm`` removed: index, watch and serve keep them out."""
        return folders.exclusions(self.store, collection or self.store.collection(self.collection_name))

    def check_index_paths(self, paths: Sequence[Path]) -> None:
        """Before a model loads: every path exists and none is kept out by ``pixseek rm``."""
        for path in paths:
            if not path.exists():
                raise FileNotFoundError(f"no such file or folder: {path}")
        refuse_excluded(paths, self.exclusions(), self.collection_name)

    def remove(self, paths: Sequence[Path | str]) -> Removal:
        """Images at or under ``paths`` leave the collection (files stay on disk), and the paths are
        kept out of later runs. A path that matches nothing is an error, and then nothing changes."""
        collection = self.collection()
        vectors = self.vectors(collection)
        return folders.remove(self.store, collection, vectors, self.index_path(collection), paths)

    def let_back(self, paths: Sequence[Path | str]) -> list[str]:
        """Undo :meth:`remove`'s exclusion of ``paths`` (and of anything under them): the next index
        run adds their images again. Returns the exclusions lifted."""
        return folders.let_back(self.store, self.collection(), paths)

    def status(self) -> list[CollectionSummary]:
        """Every collection: model, counts, failures, index, roots and exclusions (no model load)."""
        return summary.summaries(self.store, self.index_path)

    def live_collection(self) -> LiveCollection | None:
        """The configured collection with its loaded index (loading it if need be), or None before
        anything is indexed: what a server's status reports."""
        collection = self.store.collection(self.collection_name)
        return None if collection is None else summary.live(self.store, collection, self.vectors(collection))

    # ---- collections beside each other: build, activate, remove -------------------------------
    def active_collection_name(self) -> str:
        """The collection commands and servers use when none is named."""
        return self.store.active_collection_name() or DEFAULT_COLLECTION

    def collection_entries(self) -> list[CollectionEntry]:
        return collections.entries(self.store, self.active_collection_name())

    def plan_build(self, encoder: Encoder, roots: Sequence[Path] = ()) -> collections.BuildPlan:
        """This library's collection, created for ``encoder`` to be built beside the active one
        (or found half-built, to resume); see :mod:`pixseek.service.collections`."""
        return collections.plan_build(self, encoder, roots, donor_name=self.active_collection_name())

    def build(
        self, plan: collections.BuildPlan, progress: Callable[[int, int], None] | None = None
    ) -> IndexReport:
        return collections.build(self, plan, progress)

    def activate(self, name: str) -> None:
        """Make ``name`` the active collection for every command and server process."""
        check_collection_name(name)
        self.store.activate_collection(name)

    def check_removable(self, name: str) -> None:
        """A one-line error unless ``name`` exists and is not the active collection."""
        collections.check_removable(self.store, name, self.active_collection_name())

    def remove_collection(self, name: str) -> None:
        """Delete ``name`` unless it is the active collection."""
        self.check_removable(name)
        self.drop(name)

    def drop(self, name: str) -> None:
        """Delete collection ``name``, its recorded folders and its vector index (files stay)."""
        if not self.store.drop_collection(name):
            raise NotFoundError(f"no collection {name!r}")
        index_files.delete(self.index_path(name))

    # ---- vector index ------------------------------------------------------------------------
    def index_path(self, collection: CollectionInfo | str) -> Path:
        name = collection if isinstance(collection, str) else collection.name
        return self.settings.index_dir / name

    @property
    def loaded_vectors(self) -> VectorIndex | None:
        """The index if this process already loaded it (metrics must not trigger a load)."""
        return self._vectors

    def vectors(self, collection: CollectionInfo) -> VectorIndex:
        """The collection's FAISS index, loaded once and reconciled with SQL."""
        if self._vectors is None:
            return self.open_vectors(collection)[0]
        return self._vectors

    def search_vectors(self, collection: CollectionInfo) -> VectorSearch:
        """What searches rank with: the local index (:meth:`vectors`), or with ``ray_address`` set
        the collection's shards on that Ray cluster (:mod:`pixseek.distributed.sharded_serving`:
        started on first use, each loading its share from SQL, caught up with SQL before each
        search). Indexing always writes SQL and the local index; shards only read."""
        if self.settings.ray_address is None:
            return self.vectors(collection)
        return self.sharded_search(collection)

    def sharded_search(self, collection: CollectionInfo) -> ShardedSearch:
        """The collection's shards on the ``ray_address`` cluster (one set per library)."""
        from pixseek.distributed.sharded_serving import ShardedSearch

        assert self.settings.ray_address is not None
        with self._sharded_lock:
            if self._sharded is None or self._sharded.collection_id != collection.id:
                if self._sharded is not None:
                    self._sharded.close()
                self._sharded = ShardedSearch(self, collection, self.settings.ray_address)
            return self._sharded

    def open_vectors(self, collection: CollectionInfo) -> tuple[VectorIndex, int, int]:
        """(Re)load the index from disk and bring it in step with SQL: (index, added, removed)."""
        options = index_files.index_options(self.settings, self.background_maintenance)
        vectors, added, removed = index_files.load(
            self.store, collection, self.index_path(collection), options
        )
        self._vectors = vectors
        return vectors, added, removed

    def rebuild_vectors(self, collection: CollectionInfo) -> VectorIndex:
        options = index_files.index_options(self.settings, self.background_maintenance)
        self._vectors = index_files.rebuild(self.store, collection, self.index_path(collection), options)
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

    # ---- indexing ----------------------------------------------------------------------------
    def check_ocr(self, choice: OcrChoice) -> None:
        """Load the OCR engine ``choice`` asks for, before a model loads: a missing ``ocr`` extra
        or language data is a one-line error at once, not after minutes of model loading."""
        self._text_readers.for_choice(choice, self.store.collection(self.collection_name))

    def indexer(
        self, encoder: Encoder, opener: FileOpener | None = None, ocr: OcrChoice | None = None
    ) -> Indexer:
        """``opener``: how files are read; default: :meth:`file_opener`. ``ocr``: turn OCR on or
        off, or change its languages, for this and every later run of the collection; by default
        the collection's record applies (docs/search.md, "OCR at index time")."""
        from pixseek.indexer.pipeline import Indexer

        collection = self.ocr_collection(encoder, ocr)
        vectors = self.vectors(collection)
        return Indexer(
            self.store,
            collection,
            vectors,
            encoder,
            batch_size=self.settings.batch_size,
            workers=self.settings.decode_workers,
            save_vectors=lambda: self.save_vectors(collection),
            opener=opener or self.file_opener(),
            text_reader=self.text_reader(collection),
        )

    def ocr_collection(self, encoder: Encoder, ocr: OcrChoice | None) -> CollectionInfo:
        """The collection ``encoder`` indexes into, with ``ocr`` recorded on it when asked for."""
        if ocr is None or not ocr.asked:
            return self.collection_for(encoder)
        # The engine loads first: a missing extra or an unknown language creates no collection.
        reader = self._text_readers.for_choice(ocr, self.store.collection(self.collection_name))
        return record_choice(self.store, self.collection_for(encoder), reader)

    def text_reader(self, collection: CollectionInfo) -> TextReader | None:
        """The OCR the collection records, loaded once per library (None: it has none)."""
        return self._text_readers.for_collection(collection)

    def ray_indexer(
        self, encoder: Encoder, address: str | None, actors: int | None, ocr: OcrChoice | None = None
    ) -> Indexer:
        """The ``--ray`` counterpart of :meth:`indexer`: same rules, files prepared on Ray actors."""
        from pixseek.distributed.ray_indexing import ray_indexer

        return ray_indexer(self, encoder, address=address, actors=actors, ocr=ocr)

    def check_watch_paths(self, paths: Sequence[Path]) -> None:
        """Before a model loads: every path to watch is an existing folder."""
        from pixseek.indexer.watch import check_roots

        check_roots(paths)

    def file_opener(self) -> FileOpener:
        """How this library reads image files: the opener it was given, else one that reads
        anywhere (following symlinks) up to the configured ``max_file_size``."""
        from pixseek.media.files import FileOpener

        return self._opener or FileOpener(max_bytes=self.settings.max_file_bytes)

    # ---- search ------------------------------------------------------------------------------
    def searcher(self, model: str | None = None) -> Searcher:
        """A first-stage searcher of the collection (a serving library's is shared and batched)."""
        from pixseek.search.searcher import Searcher

        if self._serving is not None and model is None and self.settings.ray_address is None:
            return self._serving.searcher()
        collection = self.collection()
        encoder: Callable[[], Encoder] = functools.partial(self._query_encoder, collection, model)
        if self.settings.ray_address is None:
            return Searcher(self.store, collection, self.vectors(collection), encoder, self.file_opener())
        if self._serving is not None and model is None:  # sharded: the server's shared model still
            encoder = self._serving.query_encoder
        return self.sharded_search(collection).searcher(collection, encoder, self.file_opener())

    def _query_encoder(self, collection: CollectionInfo, model: str | None) -> Encoder:
        """The collection's model, loaded on a searcher's first query and kept for the next
        searchers of this library (a library caller's searches must not load it each time)."""
        key = (collection.id, collection.model_fingerprint, model)
        if self._search_encoder is None or self._search_encoder[0] != key:
            self._search_encoder = (key, self.encoder_for(collection, model))
        return self._search_encoder[1]

    def search(
        self,
        query: str | None = None,
        *,
        image: Path | Image.Image | None = None,
        like: str | int | None = None,
        terms: Sequence[QueryTerm] = (),
        crop: Crop | None = None,
        k: int = 10,
        depth: int | None = None,
        filters: SearchFilters | None = None,
        rerank: str | None = None,
        rerank_k: int | None = None,
        min_score: float | None = None,
        model: str | None = None,
        sort: SortOrder = SortOrder.RELEVANCE,
        cutoff: Cutoff | None = None,
        mode: SearchMode | None = None,
    ) -> SearchOutcome:
        """One search by a query of weighted terms: at most one main term (a text, an image file or
        decoded upload, cut to ``crop`` if given, or an indexed image) plus ``terms``. A query with
        a positive text is re-ranked when ``rerank`` (default: the setting) names re-rankers, which
        score that text; a match probability cut (``min_score``) needs them. ``cutoff`` ``auto``
        keeps the results (with re-rankers: the candidates) that stand out from the query's score
        distribution; without re-rankers it is the default when sorted by anything but relevance.
        ``depth``: for a page further down, how far the results go (:mod:`pixseek.service.searching`).
        ``mode``: what the texts match (:class:`SearchMode`; default hybrid once the collection has
        keyword text, :mod:`pixseek.service.hybrid_search`)."""
        built = searching.build_query(query, image, like, crop, terms)
        text = built.positive_text
        kinds = self.rerank_kinds(rerank) if text is not None else ()
        if min_score is not None and not kinds:
            raise PixseekError(
                "a minimum match probability (--min-score, min_score) cuts on the re-rankers' scores: "
                "ask for a re-ranker (--rerank, rerank) with a query that has a text"
            )
        searcher = self.searcher(model)  # before any re-ranker loads: no collection is said at once
        mode = mode or hybrid_search.default_mode(searcher, built)
        chosen = cutoff or (Cutoff.NONE if sort == SortOrder.RELEVANCE or kinds else Cutoff.AUTO)
        listing = Listing(k, depth, filters, sort, chosen, self.settings.cutoff_z)
        if not kinds:
            return hybrid_search.first_stage(searcher, built, mode, listing)
        scorers = self._serving.scorers(kinds) if self._serving else [self.scorer(kind) for kind in kinds]
        lock = self._serving.rerank_lock if self._serving else contextlib.nullcontext()
        rerank_k = rerank_k or self.rerank_k
        candidates = None  # a semantic search: re-ranking runs its own first stage
        if mode != SearchMode.SEMANTIC:
            pool = listing.candidates(max(k, rerank_k))
            candidates = hybrid_search.first_stage(searcher, built, mode, pool).hits
        result = searching.reranked(
            searcher,
            built,
            scorers,
            lock,
            listing,
            rerank_k=rerank_k,
            min_score=min_score,
            candidates=candidates,
        )
        return SearchOutcome(result.hits, kinds, result, rerank_k, query=built, rerank_text=text, mode=mode)

    def query_term(self, spec: str, *, negative: bool = False, model: str | None = None) -> QueryTerm:
        """A term as the CLI writes it, ``[WEIGHT:]TERM``; ``negative`` subtracts it
        (:func:`pixseek.service.searching.term_from_spec`)."""
        return searching.term_from_spec(self.searcher(model), spec, negative=negative)

    def indexed_image(self, image_id: int) -> IndexedImage:
        """Image ``image_id`` if it is indexed in the collection, else NotFoundError."""
        collection = self._serving.searcher().collection if self._serving else self.collection()
        return indexed_image(self.store, collection, image_id)

    @property
    def serving(self) -> Serving:
        """A serving library's shared model, searcher and re-rankers (and its indexing with them);
        PixseekError if this library was not created with ``serving=True``."""
        if self._serving is None:
            raise PixseekError("this library is not serving: create it with Library(..., serving=True)")
        return self._serving

    # ---- re-ranking ---------------------------------------------------------------------------
    def rerank_kinds(self, choice: str | None = None) -> tuple[str, ...]:
        """The re-rankers a ``--rerank`` choice (default: the setting) names, in a fixed order."""
        return reranking.kinds(choice or self.settings.rerank)

    @property
    def rerank_k(self) -> int:
        return reranking.default_k(self.settings)

    def scorer(self, kind: str, opener: FileOpener | None = None) -> CachedScorer:
        """The re-ranker of ``kind`` from its configured checkpoint, with its feature cache; it reads
        candidate files through ``opener`` (default: :meth:`file_opener`)."""
        return reranking.load_scorer(self.settings, kind, opener or self.file_opener())

    def fill_rerank_cache(
        self, scorer: CachedScorer, progress: Callable[[int, int], None] | None = None
    ) -> FillReport:
        """Cache ``scorer``'s image features for the collection's images, up to its byte budget."""
        return reranking.fill_cache(self.store, self.collection, scorer, progress)

    # ---- duplicates ---------------------------------------------------------------------------
    def duplicates(
        self,
        threshold: float | None = None,
        max_distance: int | None = None,
        *,
        folders: Sequence[str] = (),
        progress: Callable[[int, int], None] | None = None,
    ) -> DuplicateReport:
        """Exact copies and near-duplicates, grouped, each with a suggested keeper (defaults: the
        settings; :mod:`pixseek.service.duplicates`); the answer is kept until the collection changes."""
        options = duplicates.Options.of(self.settings, threshold, max_distance, folders)  # checked first
        collection = self.collection()
        vectors = self.vectors(collection)
        memo: duplicates.Memo = self.__dict__.setdefault("_duplicates", duplicates.Memo())
        return memo.get(
            (collection.id, vectors.generation, options),
            lambda: duplicates.find(self.store, collection, vectors, self.file_opener(), options, progress),
        )
