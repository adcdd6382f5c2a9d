"""One entry point for the CLI, the API and library users: settings in, store, index and model out.

It owns the rule that a collection is bound to one model: indexing creates or checks the binding,
every later command (index, watch, search, serve) uses the model the collection was built with
unless told otherwise, and another model is refused.

Heavy modules (torch, transformers, the re-rankers) are imported by the methods that need them, so
that commands which never run a model (``status``, ``rm``, ``--help``) start in a fraction of a
second.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pixseek.config import DEFAULT_MODEL, Settings, parse_bytes
from pixseek.errors import NotFoundError, PixseekError
from pixseek.indexer.walker import is_under, refuse_excluded
from pixseek.store.models import FOLDER_EXCLUDED, FOLDER_ROOT
from pixseek.store.repository import (
    ChangeBatch,
    CollectionInfo,
    CollectionMismatchError,
    SearchFilters,
    Store,
)
from pixseek.vocabulary import RerankChoice, choices

if TYPE_CHECKING:
    from pixseek.embedding import DualEncoder
    from pixseek.indexer.pipeline import Indexer
    from pixseek.media.files import FileOpener
    from pixseek.search.rerank import CachedScorer, FillReport, RerankedSearch
    from pixseek.search.searcher import Searcher, SearchHit
    from pixseek.store.vector_index import IndexOptions, VectorIndex

_COLLECTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
# Candidates re-ranked per text query unless rerank_k says otherwise. On a CPU, cached BLIP-2 costs
# ~60 ms a pair in bf16 (docs/benchmarks.md), so 50 keeps a query within a few seconds; on CUDA the
# 128 of BLIP-2's own retrieval evaluation costs well under a second.
DEFAULT_RERANK_K = {"cpu": 50, "cuda": 128}


@dataclass(frozen=True)
class CollectionSummary:
    """One collection as ``pixseek status`` reports it."""

    name: str
    model: str
    fingerprint: str
    dim: int
    precision: str
    indexed: int
    failed: int
    last_indexed: datetime | None
    index_dir: str
    index: dict  # type, factory, params, measured_recall, bytes (store.vector_index.describe_saved)
    roots: list[str]
    excluded: list[str]
    failures: list[tuple[str, str]]


@dataclass(frozen=True)
class SearchOutcome:
    """The hits of one search, best first; with re-ranking, what it scored and dropped."""

    hits: list[SearchHit]
    rerankers: tuple[str, ...]  # the re-rankers that ordered the hits, () for a first-stage search
    reranked: RerankedSearch | None = None


@dataclass(frozen=True)
class Removal:
    """What :meth:`Library.remove` did: images that left the collection, paths now kept out."""

    removed: int
    excluded: list[str]


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
        if not self.settings.database_url:  # the default SQLite file lives in the data directory
            self._writable_data_dir()
        return Store.open(self.settings.resolved_database_url)

    def _writable_data_dir(self) -> None:
        """An unwritable data directory is a setting to fix, not a traceback from deep in SQLite."""
        folder = self.settings.data_dir
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise PixseekError(
                f"cannot create the data directory {folder}: {error.strerror or error}; choose another "
                "with --data-dir or PIXSEEK_DATA_DIR"
            ) from None
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PixseekError(
                f"the data directory {folder} is not writable; choose another with --data-dir or "
                "PIXSEEK_DATA_DIR"
            )

    def close(self) -> None:
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
        existing = self.store.collection(self.settings.collection)
        return existing.model_id if existing is not None else DEFAULT_MODEL

    def load_encoder(self, model: str | None = None) -> DualEncoder:
        from pixseek.embedding import load_encoder

        return load_encoder(
            model or self.model_name(), device=self.settings.device, precision=self.settings.precision
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

    # ---- the folders a collection was indexed from, and those `rm` keeps out --------------------
    def roots(self, collection: CollectionInfo | None = None) -> list[str]:
        """Folders the collection was indexed from (``serve`` serves these when given no --root)."""
        collection = collection or self.store.collection(self.settings.collection)
        return self.store.folders(collection.id, FOLDER_ROOT) if collection else []

    def exclusions(self, collection: CollectionInfo | None = None) -> list[str]:
        """Paths ``pixseek rm`` removed: index, watch and serve keep them out."""
        collection = collection or self.store.collection(self.settings.collection)
        return self.store.folders(collection.id, FOLDER_EXCLUDED) if collection else []

    def check_index_paths(self, paths: Sequence[Path]) -> None:
        """Before a model loads: every path exists and none is kept out by ``pixseek rm``."""
        for path in paths:
            if not path.exists():
                raise FileNotFoundError(f"no such file or folder: {path}")
        refuse_excluded(paths, self.exclusions(), self.settings.collection)

    def remove(self, paths: Sequence[Path | str]) -> Removal:
        """Images at or under ``paths`` leave the collection (files stay on disk), and the paths are
        kept out of later runs. A path that matches nothing is an error, and then nothing changes."""
        collection = self.collection()
        absolute = [os.path.abspath(path) for path in paths]
        rows = {path: self.store.known_files(collection.id, [path]) for path in absolute}
        unmatched = [str(given) for given, path in zip(paths, absolute, strict=True) if not rows[path]]
        if unmatched:
            raise NotFoundError(
                f"nothing in collection {collection.name!r} at {', '.join(unmatched)}; nothing removed "
                "(`pixseek status` lists what is kept out)"
            )
        ids = sorted({row.id for known in rows.values() for row in known.values()})
        vectors = self.vectors(collection)
        changes = self.store.apply(collection.id, ChangeBatch(deleted=ids))
        vectors.update(changes.added_ids, changes.added_vectors, changes.removed_ids, changes.generation)
        vectors.save(self.index_path(collection))
        self.store.add_folders(collection.id, FOLDER_EXCLUDED, absolute)
        return Removal(removed=len(ids), excluded=absolute)

    def let_back(self, paths: Sequence[Path | str]) -> list[str]:
        """Undo :meth:`remove`'s exclusion of ``paths`` (and of anything under them): the next index
        run adds their images again. Returns the exclusions lifted."""
        collection = self.collection()
        wanted = [os.path.abspath(path) for path in paths]
        lifted = [path for path in self.exclusions(collection) if any(is_under(path, w) for w in wanted)]
        if not lifted:
            given = ", ".join(map(str, paths))
            raise NotFoundError(f"{given} is not kept out of collection {collection.name!r}")
        self.store.remove_folders(collection.id, FOLDER_EXCLUDED, lifted)
        return lifted

    def status(self) -> list[CollectionSummary]:
        """Every collection: model, counts, failures, index, roots and exclusions (no model load)."""
        from pixseek.store.vector_index import describe_saved

        summaries = []
        for info in self.store.collections():
            stats = self.store.stats(info.id)
            summaries.append(
                CollectionSummary(
                    name=info.name,
                    model=info.model_id,
                    fingerprint=info.model_fingerprint,
                    dim=info.dim,
                    precision=info.precision,
                    indexed=stats.indexed,
                    failed=stats.failed,
                    last_indexed=stats.last_indexed,
                    index_dir=str(self.index_path(info)),
                    index=describe_saved(self.index_path(info)),
                    roots=self.roots(info),
                    excluded=self.exclusions(info),
                    failures=self.store.failures(info.id),
                )
            )
        return summaries

    # ---- vector index ------------------------------------------------------------------------
    def index_path(self, collection: CollectionInfo | str) -> Path:
        name = collection if isinstance(collection, str) else collection.name
        return self.settings.index_dir / name

    def index_options(self) -> IndexOptions:
        from pixseek.store.ann.base import SearchParams
        from pixseek.store.vector_index import IndexOptions

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
            return self.open_vectors(collection)[0]
        return self._vectors

    def open_vectors(self, collection: CollectionInfo) -> tuple[VectorIndex, int, int]:
        """(Re)load the index from disk and bring it in step with SQL: (index, added, removed)."""
        from pixseek.store.ann.source import StoreVectors
        from pixseek.store.vector_index import VectorIndex

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
        from pixseek.store.vector_index import VectorIndex

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

    def drop(self, name: str) -> None:
        """Delete collection ``name``, its recorded folders and its vector index (files stay)."""
        import shutil

        from pixseek.store.vector_index import VectorIndex

        if not self.store.drop_collection(name):
            raise NotFoundError(f"no collection {name!r}")
        shutil.rmtree(self.index_path(name), ignore_errors=True)
        for path in VectorIndex.legacy_paths(self.index_path(name)):
            path.unlink(missing_ok=True)

    # ---- the two jobs ------------------------------------------------------------------------
    def indexer(self, encoder: DualEncoder, opener: FileOpener | None = None) -> Indexer:
        """``opener``: how files are read (a server passes one confined to its library roots);
        default: anywhere, up to the configured ``max_file_size``."""
        from pixseek.indexer.pipeline import Indexer

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
            opener=opener or self.file_opener(),
        )

    def file_opener(self) -> FileOpener:
        """Reads image files anywhere (following symlinks) up to the configured ``max_file_size``."""
        from pixseek.media.files import FileOpener

        return FileOpener(max_bytes=self.settings.max_file_bytes)

    def searcher(self, model: str | None = None) -> Searcher:
        from pixseek.search.searcher import Searcher

        collection = self.collection()
        encoder = functools.cache(lambda: self.encoder_for(collection, model))
        return Searcher(self.store, collection, self.vectors(collection), encoder)

    def search(
        self,
        query: str | None = None,
        *,
        image: Path | None = None,
        like: str | int | None = None,
        k: int = 10,
        filters: SearchFilters | None = None,
        rerank: str | None = None,
        min_score: float | None = None,
        model: str | None = None,
    ) -> SearchOutcome:
        """One search by text, by an image file or by an indexed image (exactly one of them). Text
        queries are re-ranked when ``rerank`` (default: the setting) names re-rankers; a match
        probability cut (``min_score``) needs them."""
        if sum(mode is not None for mode in (query, image, like)) != 1:
            raise PixseekError("give exactly one of: a text query, --image PATH or --like ID_OR_PATH")
        kinds = self.rerank_kinds(rerank) if query is not None else ()
        if min_score is not None and not kinds:
            raise PixseekError(
                "--min-score cuts on the re-rankers' match probability: add --rerank to a text query"
            )
        searcher = self.searcher(model)
        if query is not None and kinds:
            from pixseek.search.rerank import rerank_search

            result = rerank_search(
                searcher,
                query,
                [self.scorer(kind) for kind in kinds],
                k=k,
                rerank_k=self.rerank_k,
                min_score=min_score,
                filters=filters,
            )
            return SearchOutcome(result.hits, kinds, result)
        if query is not None:
            return SearchOutcome(searcher.by_text(query, k, filters), ())
        if image is not None:
            return SearchOutcome(searcher.by_image_file(image, k, filters), ())
        assert like is not None  # exactly one mode, checked above
        return SearchOutcome(searcher.like(like, k, filters), ())

    # ---- re-ranking ---------------------------------------------------------------------------
    def rerank_kinds(self, choice: str | None = None) -> tuple[str, ...]:
        """The re-rankers a ``--rerank`` choice (default: the setting) names, in a fixed order."""
        from pixseek.search.rerank.presets import RERANKER_KINDS

        choice = choice or self.settings.rerank
        if choice not in set(RerankChoice):
            raise PixseekError(f"unknown re-ranker {choice!r}; choose {choices(RerankChoice)}")
        if choice == RerankChoice.NONE:
            return ()
        if choice == RerankChoice.BOTH:
            return RERANKER_KINDS
        return (RerankChoice(choice),)

    @property
    def rerank_k(self) -> int:
        from pixseek.embedding.runtime import resolve_device

        if self.settings.rerank_k is not None:
            return self.settings.rerank_k
        return DEFAULT_RERANK_K[resolve_device(self.settings.device).type]

    def scorer(self, kind: str, opener: FileOpener | None = None) -> CachedScorer:
        """The re-ranker of ``kind`` from its configured checkpoint, with its feature cache; it reads
        candidate files through ``opener`` (default: :meth:`file_opener`)."""
        from pixseek.search.rerank import CachedScorer, FeatureCache, load_reranker

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
        return CachedScorer(reranker, cache, opener or self.file_opener())

    def fill_rerank_cache(
        self, scorer: CachedScorer, progress: Callable[[int, int], None] | None = None
    ) -> FillReport:
        """Cache ``scorer``'s image features for the collection's images, up to its byte budget."""
        from pixseek.search.rerank import BATCH_SIZE, ImageRef

        if scorer.cache is None:
            raise PixseekError("the re-ranker cache is off (rerank_cache_mb is 0); nothing to fill")
        ids = self.store.indexed_ids(self.collection().id).tolist()

        def refs() -> Iterator[ImageRef]:
            for start in range(0, len(ids), 8 * BATCH_SIZE):
                for record in self.store.images(ids[start : start + 8 * BATCH_SIZE]).values():
                    yield ImageRef.from_record(record)

        return scorer.fill(refs(), len(ids), progress)
