"""First-stage search: embed the query with the collection's own towers, rank by cosine in FAISS.

Filters are resolved to the set of allowed row ids in SQL and applied inside FAISS (an IDSelector),
so a filtered search returns k results whenever k matching images exist.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from PIL import Image

from pixseek.embedding import Encoder
from pixseek.errors import NotFoundError, PixseekError
from pixseek.media.decode import decode_image
from pixseek.media.errors import DecodeError
from pixseek.search.vector_search import VectorSearch
from pixseek.store.models import STATUS_INDEXED, ImageRecord
from pixseek.store.records import CollectionInfo, SearchFilters
from pixseek.store.repository import Store
from pixseek.vocabulary import QUERY_BLANKS

MAX_K = 10_000


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
    ):
        self.store = store
        self.collection = collection
        self.vectors = vectors
        self._encoder = encoder  # loaded on first use: `--like` needs no model at all

    def by_text(self, text: str, k: int = 10, filters: SearchFilters | None = None) -> list[SearchHit]:
        if not text.strip(QUERY_BLANKS):
            raise PixseekError("the text query is empty")
        return self.by_vector(self._encoder().embed_texts([text])[0], k, filters)

    def by_image(
        self, image: Image.Image, k: int = 10, filters: SearchFilters | None = None
    ) -> list[SearchHit]:
        return self.by_vector(self._encoder().embed_images([image.convert("RGB")])[0], k, filters)

    def by_image_file(self, path: Path, k: int = 10, filters: SearchFilters | None = None) -> list[SearchHit]:
        try:
            data = Path(path).read_bytes()
        except OSError as error:
            raise NotFoundError(f"cannot read query image {path}: {error.strerror or error}") from None
        try:
            decoded = decode_image(data, min_side=self._encoder().image_min_side)
        except DecodeError as error:
            raise PixseekError(f"query image {path} cannot be used: {error.reason}") from None
        return self.by_image(decoded.image, k, filters)

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
        pairs = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
        records = self.store.images([i for i, _ in pairs])
        # A row deleted between the FAISS search and this lookup simply drops out.
        return [SearchHit.from_record(records[i], s) for i, s in pairs if i in records]
