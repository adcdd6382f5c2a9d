"""Turn per-re-ranker ITM probabilities into one final score and order.

Fusion is the mean of the match probabilities. It was chosen over reciprocal-rank fusion with the
first stage for three reasons (docs/benchmarks.md has the discussion):

* the result stays a probability, so ``--min-score`` means the same with one re-ranker or two;
  RRF scores are rank positions with no absolute meaning and cannot carry a relevance cutoff;
* the first stage is another model (CLIP-family cosine) whose order is what re-ranking corrects;
  RRF would pull half of the weight back to it, and it discards how far apart the ITM scores are;
* BLIP-2's own evaluation orders its re-ranked candidates by the ITM output (plus its ITC score,
  which shares its backbone; a CLIP cosine is on another scale).

Random-weight checkpoints cannot rank images meaningfully, so this is a design argument, not a
measured retrieval gain.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from statistics import fmean
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pixseek.search.searcher import SearchHit


def fuse(probabilities: Iterable[float]) -> float:
    """The final score of one candidate: the mean of its ITM match probabilities."""
    return fmean(probabilities)


def order(hits: Sequence[SearchHit]) -> list[SearchHit]:
    """Best final score first; candidates without one last. The sort is stable, so ties and the
    unscored keep their first-stage order."""
    return sorted(hits, key=lambda hit: (hit.final_score is None, -(hit.final_score or 0.0)))


def cutoff(hits: Sequence[SearchHit], min_score: float | None) -> list[SearchHit]:
    """The hits whose final score reaches ``min_score`` (all of them when it is None)."""
    if min_score is None:
        return list(hits)
    return [hit for hit in hits if hit.final_score is not None and hit.final_score >= min_score]
