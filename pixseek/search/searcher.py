"""First-stage search: embed the query with the collection's own towers, rank by cosine in FAISS.

Filters are resolved to the set of allowed row ids in SQL and applied inside FAISS (an IDSelector),
so a filtered search returns k results whenever k matching images exist. A query of several terms
(:mod:`pixseek.search.query`) is embedded term by term (texts in one forward, images in another)
and combined into one vector; the indexed images it names are left out of its results.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from PIL import Image

from pixseek.embedding import Encoder
from pixseek.errors import NotFoundError, PixseekError
from pixseek.media.decode import decode_image
from pixseek.media.errors import DecodeError
from pixseek.media.files import FileOpener
from pixseek.search.cutoff import Background, Threshold
from pixseek.search.query import Crop, Query, QueryTerm, combine
from pixseek.search.vector_search import VectorSearch
from pixseek.store.models import STATUS_INDEXED, ImageRecord
from pixseek.store.records import CollectionInfo, KeywordMatch, SearchFilters
from pixseek.store.repository import Store
from pixseek.vocabulary import QUERY_BLANKS, SortOrder, TermKind

MAX_K = 10_000
# Most matches a cutoff search lists (sorted by date, every one of them is fetched and ordered).
MAX_MATCHES = 100_000


@dataclass(frozen=True)
class QueryVector:
    """A query embedded: its vector, and the indexed images it named (left out of its results)."""

    vector: np.ndarray
    excluded: frozenset[int]


@dataclass(frozen=True)
class SearchHit:
    id: int
    score: float  # first stage: cosine similarity of query and image embeddings
    path: str
    size: int  # bytes on disk
    format: str | None
    width: int | None
    height: int | None
    taken_at: datetime | None
    camera: str | None
    gps_lat: float | None
    gps_lon: float | None
    # Set by re-ranking (pixseek.search.rerank), None without it: the ITM match probability per
    # re-ranker, their fusion that orders the results, or why the candidate could not be scored.
    rerank_scores: dict[str, float] | None = None
    final_score: float | None = None
    rerank_error: str | None = None
    # Set by hybrid and text searches (pixseek.service.hybrid_search), else None/empty: the keyword
    # index's score, what of the image's texts matched (OCR words with their boxes), and the
    # fused score that ordered a hybrid search.
    keyword_score: float | None = None
    matches: tuple[KeywordMatch, ...] = ()
    fused_score: float | None = None

    @classmethod
    def from_record(cls, record: ImageRecord, score: float) -> SearchHit:
        return cls(
            id=record.id,
            score=score,
            path=record.path,
            size=record.size,
            format=record.format,
            width=record.width,
            height=record.height,
            taken_at=record.taken_at,
            camera=record.camera,
            gps_lat=record.gps_lat,
            gps_lon=record.gps_lon,
        )


class Searcher:
    """Stateless per query: safe to share between threads (no per-request mutable parameters)."""

    def __init__(
        self,
        store: Store,
        collection: CollectionInfo,
        vectors: VectorSearch,
        encoder: Callable[[], Encoder],
        opener: FileOpener | None = None,
    ):
        """``opener`` reads the files of indexed images a query crops (a server's is confined to its
        roots); default: any readable file."""
        self.store = store
        self.collection = collection
        self.vectors = vectors
        self._encoder = encoder  # loaded on first use: `--like` needs no model at all
        self._opener = opener or FileOpener()
        self.background = Background(store, collection)

    def by_text(self, text: str, k: int = 10, filters: SearchFilters | None = None) -> list[SearchHit]:
        if not text.strip(QUERY_BLANKS):
            raise PixseekError("the text query is empty")
        return self.by_vector(self._encoder().embed_texts([text])[0], k, filters)

    def by_image_file(self, path: Path, k: int = 10, filters: SearchFilters | None = None) -> list[SearchHit]:
        """A query of one image file: what `pixseek search --image FILE` runs (through :meth:`embed`)."""
        return self.search(Query((QueryTerm(TermKind.IMAGE, Path(path)),)), k, filters)

    def _query_image(self, path: str | os.PathLike[str], crop: Crop | None = None) -> Image.Image:
        """A query image file, decoded (EXIF-oriented) and cut to ``crop``. A crop keeps the full
        resolution until it is cut, so a small region is not upscaled from a thumbnail."""
        try:
            data = Path(path).read_bytes()
        except OSError as error:
            raise NotFoundError(f"cannot read query image {path}: {error.strerror or error}") from None
        return self._decoded(data, str(path), crop)

    def _decoded(self, data: bytes, name: str, crop: Crop | None) -> Image.Image:
        try:
            image = decode_image(data, min_side=None if crop else self._encoder().image_min_side).image
        except DecodeError as error:
            raise PixseekError(f"query image {name} cannot be used: {error.reason}") from None
        return crop.apply(image) if crop else image

    def _indexed_image(self, record: ImageRecord, crop: Crop) -> Image.Image:
        try:
            data = self._opener.read(record.path)
        except DecodeError as error:  # refused by the opener: too large, outside the roots, a link
            raise PixseekError(f"indexed image {record.id} cannot be read: {error.reason}") from None
        except OSError as error:
            reason = error.strerror or error
            raise NotFoundError(f"indexed image {record.id} cannot be read: {reason}") from None
        return self._decoded(data, f"{record.id}", crop)

    def embed(self, query: Query) -> QueryVector:
        """The query's one vector (:func:`pixseek.search.query.combine` of its terms)."""
        terms = query.terms
        vectors: list[np.ndarray | None] = [None] * len(terms)
        excluded: set[int] = set()
        images: list[tuple[int, Image.Image]] = []
        stored: list[tuple[int, int]] = []
        for i, term in enumerate(terms):
            if term.kind == TermKind.IMAGE:
                images.append((i, self._query_image(Path(str(term.value)), term.crop)))
            elif term.kind == TermKind.UPLOAD:
                assert isinstance(term.value, Image.Image)
                image = term.value.convert("RGB")
                images.append((i, term.crop.apply(image) if term.crop else image))
            elif term.kind == TermKind.INDEXED:
                record = self.resolve(term.value)  # type: ignore[arg-type]  # id or path
                excluded.add(record.id)
                if term.crop is None:
                    stored.append((i, record.id))
                else:
                    images.append((i, self._indexed_image(record, term.crop)))
        texts = [(i, str(term.value)) for i, term in enumerate(terms) if term.kind == TermKind.TEXT]
        if texts:
            for (i, _), vector in zip(texts, self._encoder().embed_texts([t for _, t in texts]), strict=True):
                vectors[i] = vector
        if images:
            embedded = self._encoder().embed_images([image for _, image in images])
            for (i, _), vector in zip(images, embedded, strict=True):
                vectors[i] = vector
        if stored:
            ids, matrix = self.store.embeddings([image_id for _, image_id in stored], self.collection.dim)
            by_id = dict(zip(ids.tolist(), matrix, strict=True))
            for i, image_id in stored:
                vectors[i] = by_id[image_id]
        matrix = np.stack([v for v in vectors if v is not None])
        return QueryVector(combine(matrix, [term.weight for term in terms]), frozenset(excluded))

    def search(self, query: Query, k: int = 10, filters: SearchFilters | None = None) -> list[SearchHit]:
        """The ``k`` best images for a query of any terms, the indexed images it names left out."""
        embedded = self.embed(query)
        hits = self.by_vector(embedded.vector, min(k + len(embedded.excluded), MAX_K), filters)
        return [hit for hit in hits if hit.id not in embedded.excluded][:k]

    def threshold(self, query: np.ndarray, z: float) -> Threshold | None:
        """The adaptive cutoff of a query vector, ``z`` robust deviations above its background
        (:mod:`pixseek.search.cutoff`)."""
        return self.background.threshold(query, len(self.vectors), z)

    def matches(
        self,
        query: QueryVector,
        threshold: Threshold | None,
        filters: SearchFilters | None = None,
        limit: int = MAX_MATCHES,
    ) -> tuple[list[tuple[int, float]], float | None]:
        """Every (id, score) at or above ``threshold`` (every one, without), best first, up to
        ``limit``, and the cosine the threshold came to (it depends on the best score, known after
        the first search). k-NN searches with a growing k until the last score falls below it:
        FAISS's range search would miss the base + delta merge and the filters' IDSelector."""
        allowed = self.store.filtered_ids(self.collection.id, filters) if filters else None
        available = len(self.vectors) if allowed is None else len(allowed)
        named = len(query.excluded)
        # A short list (a relevance page) asks for just that many first; a listing of every match
        # starts at 256 and grows.
        k, floor = min(limit + named if limit < 256 else 256, available + named), -math.inf
        while True:
            scores, ids = self.vectors.search(query.vector[None, :], max(k, 1), allowed)
            pairs = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
            kept = [(i, s) for i, s in pairs if i not in query.excluded]
            if threshold is not None and kept:
                floor = threshold.score(kept[0][1])
            complete = len(pairs) < k or (kept and kept[-1][1] < floor) or k >= available
            if complete or k >= limit + named:
                break
            k = min(k * 4, limit + named, available + named)
        return [(i, s) for i, s in kept if s >= floor][:limit], None if threshold is None else floor

    def browse(
        self, query: QueryVector, order: SortOrder, filters: SearchFilters | None, limit: int
    ) -> tuple[list[SearchHit], int] | None:
        """Every image (passing ``filters``) in ``order``, without a cutoff: the first ``limit``
        with their cosine to the query, and how many there are. One sorted SQL query instead of a
        vector search over the whole collection; None where SQL cannot order them in one query."""
        page = self.store.ordered_ids(self.collection.id, filters, order, limit, query.excluded)
        if page is None:
            return None
        ids, total = page
        found, vectors = self.store.embeddings(ids, self.collection.dim)
        scores = dict(zip(found.tolist(), (vectors @ query.vector).tolist(), strict=True))
        return self.hits((i, scores[i]) for i in ids if i in scores), total

    def hits(self, pairs: Iterable[tuple[int, float]]) -> list[SearchHit]:
        """The (id, score) pairs as hits, in their order; a row deleted meanwhile drops out."""
        pairs = list(pairs)
        records = self.store.images([i for i, _ in pairs])
        return [SearchHit.from_record(records[i], s) for i, s in pairs if i in records]

    def like(
        self, id_or_path: str | int, k: int = 10, filters: SearchFilters | None = None
    ) -> list[SearchHit]:
        """Images similar to an indexed one, from its stored vector (no model call), itself excluded."""
        record = self.resolve(id_or_path)
        _, vectors = self.store.embeddings([record.id], self.collection.dim)
        hits = self.by_vector(vectors[0], k + 1, filters)
        return [hit for hit in hits if hit.id != record.id][:k]

    def resolve(self, id_or_path: str | int) -> ImageRecord:
        record = None
        if isinstance(id_or_path, int) or str(id_or_path).isdigit():
            record = self.store.images([int(id_or_path)]).get(int(id_or_path))
        if record is None and not isinstance(id_or_path, int):
            record = self.store.image_by_path(self.collection.id, os.path.abspath(id_or_path))
        if record is None or record.collection_id != self.collection.id or record.status != STATUS_INDEXED:
            raise NotFoundError(
                f"{id_or_path} is not an indexed image of collection {self.collection.name!r}"
            )
        return record

    def by_vector(
        self, query: np.ndarray, k: int = 10, filters: SearchFilters | None = None
    ) -> list[SearchHit]:
        if not 1 <= k <= MAX_K:
            raise PixseekError(f"k must be between 1 and {MAX_K}, got {k}")
        allowed = self.store.filtered_ids(self.collection.id, filters) if filters else None
        scores, ids = self.vectors.search(query[None, :], k, allowed)
        return self.hits((int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0)
