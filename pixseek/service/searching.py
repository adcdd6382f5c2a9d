"""The two ways one search runs: a first-stage search (by text, by an image, by an indexed image)
and a re-ranked text search. :meth:`pixseek.library.Library.search` decides which one, once, for
every front end.

``depth`` serves pagination: a front end that shows results ``offset .. offset + k`` asks for
``k`` with ``depth = offset + k``. A first-stage search then fetches ``depth`` hits (at most what a
search returns, so the last pages are short or empty rather than an error); a re-ranked one still
scores only ``max(k, rerank_k)`` candidates, since a deep page must not re-rank thousands, and its
results end there.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    from PIL import Image

    from pixseek.search.rerank import CachedScorer, RerankedSearch
    from pixseek.search.searcher import Searcher, SearchHit
    from pixseek.store.records import SearchFilters


@dataclass(frozen=True)
class SearchOutcome:
    """The hits of one search, best first; with re-ranking, what it scored and dropped."""

    hits: list[SearchHit]
    rerankers: tuple[str, ...]  # the re-rankers that ordered the hits, () for a first-stage search
    reranked: RerankedSearch | None = None
    # Candidates re-ranking was asked to score (None without it): no result lies beyond them.
    rerank_k: int | None = None


def first_stage(
    searcher: Searcher,
    *,
    query: str | None,
    image: Path | str | Image.Image | None,
    like: str | int | None,
    k: int,
    depth: int | None,
    filters: SearchFilters | None,
) -> list[SearchHit]:
    """By text, by an image (a file, or an image already decoded, e.g. an upload) or by an indexed
    image: exactly one of ``query``, ``image`` and ``like``."""
    from pixseek.search.searcher import MAX_K

    # like() fetches one more (the image itself), so one less than the searcher's limit.
    wanted = k if depth is None else min(depth, MAX_K - 1 if like is not None else MAX_K)
    if query is not None:
        return searcher.by_text(query, wanted, filters)
    if isinstance(image, str | os.PathLike):
        return searcher.by_image_file(Path(image), wanted, filters)
    if image is not None:
        return searcher.by_image(image, wanted, filters)
    assert like is not None  # exactly one mode: the caller checked
    return searcher.like(like, wanted, filters)


def reranked(
    searcher: Searcher,
    query: str,
    scorers: Sequence[CachedScorer],
    lock: AbstractContextManager[Any],
    *,
    k: int,
    depth: int | None,
    rerank_k: int,
    min_score: float | None,
    filters: SearchFilters | None,
) -> RerankedSearch:
    """A text search whose first ``max(k, rerank_k)`` candidates ``scorers`` re-rank, under ``lock``
    (a server re-ranks one query at a time: each already uses every core)."""
    from pixseek.search.rerank import rerank_search

    with lock:
        return rerank_search(
            searcher,
            query,
            scorers,
            k=min(depth or k, max(k, rerank_k)),
            rerank_k=rerank_k,
            min_score=min_score,
            filters=filters,
        )
