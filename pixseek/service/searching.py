"""The ways one search runs: a first-stage search of a query of any terms (a text, images, indexed
images, each weighted), with or without the adaptive cutoff, in any order; and a re-ranked search,
whose re-rankers score the query's positive texts. :meth:`pixseek.library.Library.search` decides
which one, once, for every front end.

``depth`` serves pagination: a front end that shows results ``offset .. offset + k`` asks for
``k`` with ``depth = offset + k``. A first-stage search then fetches ``depth`` hits (at most what a
search returns, so the last pages are short or empty rather than an error); a re-ranked one still
scores only ``max(k, rerank_k)`` candidates, since a deep page must not re-rank thousands, and its
results end there.

Order and cutoff: a search sorted by anything but relevance lists every match, so it needs a notion
of match: the adaptive cutoff (:mod:`pixseek.search.cutoff`) for a first-stage search, the re-ranked
candidates at or above ``min_score`` for a re-ranked one. The matches are sorted, then paged.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pixseek.config import CUTOFF_Z
from pixseek.errors import NotFoundError, PixseekError
from pixseek.search.query import Crop, Query, QueryTerm, split_weight
from pixseek.vocabulary import Cutoff, SearchMode, SortOrder, TermKind

if TYPE_CHECKING:
    from PIL import Image

    from pixseek.search.rerank import CachedScorer, RerankedSearch
    from pixseek.search.searcher import Searcher, SearchHit
    from pixseek.store.records import SearchFilters


@dataclass(frozen=True)
class SearchOutcome:
    """The hits of one search, in the order asked for; with re-ranking, what it scored and dropped."""

    hits: list[SearchHit]
    rerankers: tuple[str, ...]  # the re-rankers that scored the hits, () for a first-stage search
    reranked: RerankedSearch | None = None
    # Candidates re-ranking was asked to score (None without it): no result lies beyond them.
    rerank_k: int | None = None
    query: Query | None = None
    # What the re-rankers read: the query's positive texts (a composed query's images and negative
    # terms cannot be scored by an image-text matcher). None without re-ranking.
    rerank_text: str | None = None
    cutoff: float | None = None  # the adaptive cutoff's cosine, when one applied
    total: int | None = None  # how many results passed the cutoff, when all of them were listed
    mode: SearchMode = SearchMode.SEMANTIC  # what the query was matched against


@dataclass(frozen=True)
class Listing:
    """What a search lists, whatever it matches: pages of ``k`` (``depth``: how far a deeper page
    reaches, offset + k), within ``filters``, in ``sort`` order, above ``cutoff`` (``cutoff_z``: how
    many robust deviations above the query's background a match lies)."""

    k: int = 10
    depth: int | None = None
    filters: SearchFilters | None = None
    sort: SortOrder = SortOrder.RELEVANCE
    cutoff: Cutoff = Cutoff.NONE
    cutoff_z: float = CUTOFF_Z

    @property
    def wanted(self) -> int:
        """How many results the search returns (the front end pages through them)."""
        from pixseek.search.searcher import MAX_K

        return min(self.depth or self.k, MAX_K)

    @property
    def ordered(self) -> bool:
        """Sorted by anything but relevance: every match is listed, then ordered."""
        return self.sort != SortOrder.RELEVANCE

    def candidates(self, count: int) -> Listing:
        """The best ``count`` by relevance, within the same filters and cutoff: what a second stage
        (re-ranking) takes from the first."""
        return dataclasses.replace(self, k=count, depth=None, sort=SortOrder.RELEVANCE)


def build_query(
    query: str | None,
    image: Path | str | Image.Image | None,
    like: str | int | None,
    crop: Crop | None,
    terms: Sequence[QueryTerm],
) -> Query:
    """The main term (at most one of a text, an image and an indexed image; ``crop`` cuts it) and
    the extra ``terms`` as one :class:`Query`."""
    if sum(mode is not None for mode in (query, image, like)) > 1:
        raise PixseekError("give at most one of: a text query, --image PATH or --like ID_OR_PATH")
    if crop is not None and image is None and like is None:
        raise PixseekError("a crop (--crop) cuts the query image: give --image FILE or --like ID_OR_PATH")
    main: list[QueryTerm] = []
    if query is not None:
        main.append(QueryTerm(TermKind.TEXT, query))
    elif isinstance(image, str | os.PathLike):
        main.append(QueryTerm(TermKind.IMAGE, Path(image), crop=crop))
    elif image is not None:
        main.append(QueryTerm(TermKind.UPLOAD, image, crop=crop))
    elif like is not None:
        main.append(QueryTerm(TermKind.INDEXED, like, crop=crop))
    if not main and not terms:
        raise PixseekError("give a text query, --image PATH, --like ID_OR_PATH or a term (--plus)")
    return Query((*main, *terms))


def term_from_spec(searcher: Searcher, spec: str, *, negative: bool = False) -> QueryTerm:
    """A term the way the CLI writes it, ``[WEIGHT:]TERM`` (WEIGHT > 0, default 1; ``negative``
    subtracts it): an integer or the path of an indexed image is that indexed image (its stored
    vector); another existing path is an image file; anything else is a text."""
    from pixseek.store.models import STATUS_INDEXED

    weight, spec = split_weight(spec)
    if weight < 0:
        raise PixseekError(f"term {spec!r}: give a positive weight (--minus subtracts the term)")
    weight = -weight if negative else weight
    text = os.path.expanduser(spec.strip())
    if text.isdigit():
        return QueryTerm(TermKind.INDEXED, int(text), weight)
    if not os.path.exists(text) and _names_a_file(text):
        raise NotFoundError(f"no such image file: {text}")
    if os.path.exists(text):
        record = searcher.store.image_by_path(searcher.collection.id, os.path.abspath(text))
        if record is not None and record.status == STATUS_INDEXED:
            return QueryTerm(TermKind.INDEXED, record.id, weight)
        if os.path.isdir(text):
            raise PixseekError(f"term {spec!r} is a folder, not an image")
        return QueryTerm(TermKind.IMAGE, Path(text), weight)
    return QueryTerm(TermKind.TEXT, spec, weight)


def _names_a_file(text: str) -> bool:
    """Whether a term is meant as a file: a path-like start or an image file's extension. Such a
    term that names no file is a mistake to report, not a text to search for."""
    from pixseek.indexer.walker import IMAGE_EXTENSIONS

    return text.startswith(("./", "../", "/")) or Path(text).suffix.lower() in IMAGE_EXTENSIONS


def first_stage(searcher: Searcher, query: Query, listing: Listing) -> SearchOutcome:
    """The query's best ``listing.wanted`` hits; with the cutoff, only those above it. Sorted by
    anything but relevance, every match (every image, without a cutoff: browsing by date),
    ordered, then the first ``wanted``."""
    from pixseek.search.searcher import MAX_MATCHES

    wanted, filters, sort = listing.wanted, listing.filters, listing.sort
    if listing.cutoff == Cutoff.NONE and not listing.ordered:
        return SearchOutcome(_plain(searcher, query, wanted, filters), (), query=query)
    embedded = searcher.embed(query)
    if listing.cutoff == Cutoff.NONE:  # sorted, every image matches: browsing, ordered by SQL
        browsed = searcher.browse(embedded, sort, filters, wanted)
        if browsed is not None:
            return SearchOutcome(browsed[0], (), query=query, total=browsed[1])
    # A collection of a few images has no background to stand out from: nothing is cut.
    auto = listing.cutoff == Cutoff.AUTO
    threshold = searcher.threshold(embedded.vector, listing.cutoff_z) if auto else None
    limit = MAX_MATCHES if listing.ordered else wanted
    pairs, floor = searcher.matches(embedded, threshold, filters, limit=limit)
    complete = len(pairs) < limit or listing.ordered
    if listing.ordered:
        pairs = _sorted_pairs(searcher, pairs, sort)
    return SearchOutcome(
        searcher.hits(pairs[:wanted]),
        (),
        query=query,
        cutoff=floor,
        total=len(pairs) if complete else None,
    )


def _plain(searcher: Searcher, query: Query, wanted: int, filters: SearchFilters | None) -> list[SearchHit]:
    """A search without cutoff; a plain text query keeps the searcher's own text path (a server's
    batches concurrent text queries into one forward)."""
    from pixseek.search.searcher import MAX_K

    single = query.simple
    if single is not None and single.kind == TermKind.TEXT:
        return searcher.by_text(str(single.value), wanted, filters)
    if single is not None and single.kind == TermKind.INDEXED:
        return searcher.like(single.value, min(wanted, MAX_K - 1), filters)  # type: ignore[arg-type]
    return searcher.search(query, wanted, filters)


def reranked(
    searcher: Searcher,
    query: Query,
    scorers: Sequence[CachedScorer],
    lock: AbstractContextManager[Any],
    listing: Listing,
    *,
    rerank_k: int,
    min_score: float | None,
    candidates: Sequence[SearchHit] | None = None,
) -> RerankedSearch:
    """A search whose first ``max(k, rerank_k)`` candidates ``scorers`` re-rank against the query's
    positive texts, under ``lock`` (a server re-ranks one query at a time: each already uses every
    core). With the adaptive cutoff, only candidates above it are re-ranked (fewer, so faster).
    Sorted by anything but relevance, the candidates that pass ``min_score`` are ordered.
    ``candidates``: another first stage's (a hybrid search's), best first."""
    from pixseek.search.rerank import rerank_search

    text = query.positive_text
    assert text is not None  # the caller re-ranks only a query with a positive text
    pool = max(listing.k, rerank_k)
    shown = min(listing.depth or listing.k, pool)
    if candidates is not None:
        candidates = list(candidates)[:pool]
    elif listing.cutoff == Cutoff.AUTO:
        candidates = first_stage(searcher, query, listing.candidates(pool)).hits
    elif query.simple is None:
        candidates = searcher.search(query, pool, listing.filters)
    with lock:
        result = rerank_search(
            searcher,
            text,
            scorers,
            k=pool if listing.ordered else shown,
            rerank_k=rerank_k,
            min_score=min_score,
            filters=listing.filters,
            candidates=candidates,
        )
    if not listing.ordered:
        return result
    return dataclasses.replace(result, hits=order(result.hits, listing.sort)[:shown])


_NEVER = datetime.max

Item = TypeVar("Item")


def _ordered(
    items: Sequence[Item], key: Callable[[Item], tuple[datetime | None, str]], sort: SortOrder
) -> list[Item]:
    """``items`` by path, or by the date taken with undated ones last in both directions; ties and
    the undated by path. ``key`` gives an item's (taken, path)."""
    if sort == SortOrder.RELEVANCE:
        return list(items)
    by_path = sorted(items, key=lambda item: key(item)[1])
    if sort == SortOrder.PATH:
        return by_path
    dated = [item for item in by_path if key(item)[0] is not None]
    undated = [item for item in by_path if key(item)[0] is None]
    dated.sort(key=lambda item: key(item)[0] or _NEVER, reverse=sort == SortOrder.NEWEST)  # stable
    return dated + undated


def order(hits: Sequence[SearchHit], sort: SortOrder) -> list[SearchHit]:
    """``hits`` in the order asked for (relevance: as they are)."""
    return _ordered(hits, lambda hit: (hit.taken_at, hit.path), sort)


def _sorted_pairs(
    searcher: Searcher, pairs: list[tuple[int, float]], sort: SortOrder
) -> list[tuple[int, float]]:
    """Every match ordered by the date taken or the path, read from SQL without whole rows (a
    date-sorted search may order a hundred thousand matches to show the first page)."""
    keys = searcher.store.sort_keys([i for i, _ in pairs])
    return _ordered([pair for pair in pairs if pair[0] in keys], lambda pair: keys[pair[0]], sort)
