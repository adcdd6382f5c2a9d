"""Fusing a semantic ranking and a keyword ranking into one list (issue 15's hybrid search).

The two lists score on scales that cannot be compared: a cosine from the dual encoder and BM25 (or
PostgreSQL's ``ts_rank_cd``) from the keyword index. **Reciprocal rank fusion** (Cormack, Clarke and
Buettcher, SIGIR 2009) needs no calibration between them: every list gives an image
``weight / (k + rank)`` and the sums order the result; ``k`` (60 in the paper) damps the difference
between the first few ranks. An image missing from a list contributes nothing from it. Ties are
broken by the image's best rank in any list, then by its rank in the ``prefer`` list (hybrid search
prefers the keyword list: an image only it finds at rank r, and one only the semantic list finds at
rank r, tie exactly, and the one holding the query's words goes first), then by id, so the fused
order is deterministic. Measured against k = 10 and 30 and against min-max and z-score fusion in
docs/search.md ("Hybrid search, measured", ``bench/quality_hybrid.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

RRF_K = 60


@dataclass(frozen=True)
class Fused:
    """One image of the fused list: its fused score and its rank (1-based) in each input list."""

    id: int
    score: float
    ranks: Mapping[str, int]


def reciprocal_rank_fusion(
    rankings: Mapping[str, Sequence[int]],
    *,
    k: int = RRF_K,
    weights: Mapping[str, float] | None = None,
    prefer: str | None = None,
) -> list[Fused]:
    """``rankings``: ids best first, by list name ('semantic', 'keyword', ...). ``prefer``: the
    list whose better rank breaks a tie of fused score and best rank (before the id)."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    ranks = _ranks(rankings)
    scores = {
        image: sum((weights or {}).get(name, 1.0) / (k + rank) for name, rank in by_list.items())
        for image, by_list in ranks.items()
    }
    return _ordered(scores, ranks, prefer)


def _ranks(rankings: Mapping[str, Sequence[int]]) -> dict[int, dict[str, int]]:
    """Each image's 1-based rank in each list it appears in (its first place if repeated)."""
    ranks: dict[int, dict[str, int]] = {}
    for name, ids in rankings.items():
        for rank, image in enumerate(ids, 1):
            ranks.setdefault(image, {}).setdefault(name, rank)
    return ranks


def _ordered(
    scores: Mapping[int, float], ranks: Mapping[int, Mapping[str, int]], prefer: str | None = None
) -> list[Fused]:
    def key(image: int) -> tuple[float, int, float, int]:
        preferred = ranks[image].get(prefer, math.inf) if prefer is not None else math.inf
        return (-scores[image], min(ranks[image].values()), preferred, image)

    order = sorted(scores, key=key)
    return [Fused(image, scores[image], dict(ranks[image])) for image in order]
