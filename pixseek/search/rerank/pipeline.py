"""Second stage of a text search: re-rank the first stage's candidates with ITM heads.

The first stage returns ``max(k, rerank_k)`` candidates; every re-ranker scores all of them; the
fused probability orders them; ``min_score`` then drops those below it and the top ``k`` remain.
No candidate is lost on the way: one whose file vanished or no longer decodes keeps its first-stage
score, gets a ``rerank_error`` instead of a probability, and is listed in ``unscored``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pixseek.search.rerank.fusion import cutoff, fuse, order
from pixseek.search.rerank.scorer import CachedScorer, ImageRef
from pixseek.search.searcher import Searcher, SearchHit
from pixseek.store.models import ImageRecord
from pixseek.store.records import SearchFilters


@dataclass(frozen=True)
class RerankedSearch:
    hits: list[SearchHit]  # at most k, best first, at or above min_score
    candidates: int  # how many the first stage returned and the re-rankers saw
    unscored: list[SearchHit]  # candidates that could not be re-ranked, each with its rerank_error
    below_min_score: int  # scored candidates that min_score removed


def rerank_hits(
    text: str,
    hits: Sequence[SearchHit],
    records: Mapping[int, ImageRecord],
    scorers: Sequence[CachedScorer],
) -> list[SearchHit]:
    """All of ``hits`` (k in, k out), each with its ITM scores, ordered by the fused score."""
    if not scorers:
        raise ValueError("re-ranking needs at least one re-ranker")
    refs = [ImageRef.from_record(records[h.id]) if h.id in records else ImageRef(h.path) for h in hits]
    results = {scorer.name: scorer.score(text, refs) for scorer in scorers}
    reranked = []
    for i, hit in enumerate(hits):
        scores = {name: p for name, r in results.items() if (p := r.probabilities[i]) is not None}
        error = next((r.errors[i] for r in results.values() if r.errors[i] is not None), None)
        final = fuse(scores.values()) if error is None and len(scores) == len(results) else None
        reranked.append(dataclasses.replace(hit, rerank_scores=scores, final_score=final, rerank_error=error))
    return order(reranked)


def rerank_search(
    searcher: Searcher,
    text: str,
    scorers: Sequence[CachedScorer],
    *,
    k: int,
    rerank_k: int,
    min_score: float | None = None,
    filters: SearchFilters | None = None,
    candidates: Sequence[SearchHit] | None = None,
) -> RerankedSearch:
    """A text search whose first ``max(k, rerank_k)`` candidates are re-ranked by ``scorers``.
    ``candidates``: those of another first stage (a composed query's) instead of ``text``'s own."""
    if min_score is not None and not 0.0 <= min_score <= 1.0:
        raise ValueError(f"min_score is a probability between 0 and 1, got {min_score}")
    if candidates is None:
        candidates = searcher.by_text(text, max(k, rerank_k), filters)
    records = searcher.store.images([hit.id for hit in candidates])
    ranked = rerank_hits(text, candidates, records, scorers)
    unscored = [hit for hit in ranked if hit.final_score is None]
    kept = cutoff(ranked, min_score)
    below = len(ranked) - len(kept) - (len(unscored) if min_score is not None else 0)
    return RerankedSearch(kept[:k], len(ranked), unscored, below)
