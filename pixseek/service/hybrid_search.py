"""Text and hybrid search: the keyword index (OCR text, file and folder names, EXIF/XMP titles,
descriptions and keywords; pixseek.store.keyword_queries) alone, or next to the embedding.

A hybrid search ranks the query twice, by cosine in the vector index and by BM25 (SQLite) or
``ts_rank_cd`` (PostgreSQL) in the keyword index, and fuses the two lists by reciprocal rank fusion
(:mod:`pixseek.search.hybrid`): an image that both find rises, an image only one finds keeps its
place in that one (an exact tie goes to the keyword list's image). The keyword side reads the
query's positive texts (quoted phrases match exactly); the semantic side is the query as a whole,
with the adaptive cutoff when asked for. Each list contributes up to :data:`CANDIDATES` images (more
for a deeper page), so a keyword-only match far down the semantic ranking still reaches the first
page. Hits carry their cosine (computed from the stored vector for keyword-only ones), their keyword
score and matched words, and the fused score that ordered them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from pixseek.search.hybrid import reciprocal_rank_fusion
from pixseek.service import searching
from pixseek.service.searching import Listing, SearchOutcome, order
from pixseek.vocabulary import Cutoff, SearchMode

if TYPE_CHECKING:
    from pixseek.search.query import Query
    from pixseek.search.searcher import QueryVector, Searcher, SearchHit
    from pixseek.store.records import KeywordHit

CANDIDATES = 100
MAX_SORTED = 10_000  # a sorted text or hybrid search orders at most this many of each list


def default_mode(searcher: Searcher, query: Query) -> SearchMode:
    """Hybrid for a query with a text once the collection has keyword text (OCR or EXIF/XMP; file
    names alone do not count), else semantic."""
    if query.positive_text is not None and searcher.store.has_keyword_text(searcher.collection.id):
        return SearchMode.HYBRID
    return SearchMode.SEMANTIC


def first_stage(searcher: Searcher, query: Query, mode: SearchMode, listing: Listing) -> SearchOutcome:
    """The search without re-ranking, in ``mode``. A query without a text has no words to match:
    hybrid falls back to semantic, text finds nothing (the outcome's ``mode`` says which ran)."""
    if mode == SearchMode.HYBRID and query.positive_text is None:
        mode = SearchMode.SEMANTIC
    if mode == SearchMode.TEXT:
        return text_only(searcher, query, listing)
    if mode == SearchMode.HYBRID:
        return hybrid(searcher, query, listing)
    return searching.first_stage(searcher, query, listing)


def text_only(searcher: Searcher, query: Query, listing: Listing) -> SearchOutcome:
    """Images whose texts hold every word and phrase of the query, best first (or sorted). No
    model runs: ``score`` is then the keyword score."""
    text = query.positive_text
    if text is None:
        return SearchOutcome([], (), query=query, total=0, mode=SearchMode.TEXT)
    wanted = listing.wanted
    limit = MAX_SORTED if listing.ordered else wanted
    found = searcher.store.keyword_search(searcher.collection.id, text, limit, listing.filters)
    by_id = {hit.image_id: hit for hit in found}
    hits = [
        _with_keywords(hit, by_id[hit.id])
        for hit in searcher.hits((hit.image_id, hit.score) for hit in found)
    ]
    exact = len(found) < limit or listing.ordered
    if exact and len(found) < limit and searcher.store.common_keyword_words(text):
        exact = False  # a query of common words only ranks a bounded sample: there may be more
    total = len(found) if exact else None
    return SearchOutcome(
        order(hits, listing.sort)[:wanted], (), query=query, total=total, mode=SearchMode.TEXT
    )


def hybrid(searcher: Searcher, query: Query, listing: Listing) -> SearchOutcome:
    """The semantic and the keyword ranking of the query, fused (module docstring)."""
    text = query.positive_text
    assert text is not None  # first_stage searches a query without a text semantically
    wanted = listing.wanted
    pool = MAX_SORTED if listing.ordered else max(wanted, CANDIDATES)
    embedded = searcher.embed(query)
    semantic, floor = _semantic(searcher, embedded, listing, pool)
    keyword = [
        hit
        for hit in searcher.store.keyword_search(searcher.collection.id, text, pool, listing.filters)
        if hit.image_id not in embedded.excluded
    ]
    fused = reciprocal_rank_fusion(
        {"semantic": [i for i, _ in semantic], "keyword": [hit.image_id for hit in keyword]},
        prefer="keyword",
    )
    shown = fused if listing.ordered else fused[:wanted]
    keyword_only = [f.id for f in shown if "semantic" not in f.ranks]
    cosines = dict(semantic) | _cosines(searcher, embedded, keyword_only)
    by_id = {hit.image_id: hit for hit in keyword}
    fused_scores = {f.id: f.score for f in shown}
    hits = []
    for hit in searcher.hits((f.id, cosines[f.id]) for f in shown if f.id in cosines):
        found = by_id.get(hit.id)
        hit = _with_keywords(hit, found) if found else hit
        hits.append(_fused(hit, fused_scores[hit.id]))
    total = len(fused) if listing.ordered or len(fused) < wanted else None
    return SearchOutcome(
        order(hits, listing.sort)[:wanted],
        (),
        query=query,
        cutoff=floor,
        total=total,
        mode=SearchMode.HYBRID,
    )


def _semantic(
    searcher: Searcher, embedded: QueryVector, listing: Listing, pool: int
) -> tuple[list[tuple[int, float]], float | None]:
    """The semantic list: the query's ``pool`` best (id, cosine), above the cutoff if asked for."""
    auto = listing.cutoff == Cutoff.AUTO
    threshold = searcher.threshold(embedded.vector, listing.cutoff_z) if auto else None
    return searcher.matches(embedded, threshold, listing.filters, limit=pool)


def _cosines(searcher: Searcher, embedded: QueryVector, ids: Sequence[int]) -> dict[int, float]:
    """Cosines of images the semantic list did not reach, from their stored vectors."""
    if not ids:
        return {}
    found, vectors = searcher.store.embeddings(list(ids), searcher.collection.dim)
    scores = vectors @ np.asarray(embedded.vector, dtype=np.float32)
    return {int(i): float(s) for i, s in zip(found, scores, strict=True) if math.isfinite(s)}


def _with_keywords(hit: SearchHit, found: KeywordHit) -> SearchHit:
    return dataclasses.replace(hit, keyword_score=found.score, matches=found.matches)


def _fused(hit: SearchHit, score: float) -> SearchHit:
    return dataclasses.replace(hit, fused_score=score)
