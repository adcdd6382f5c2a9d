"""Re-ranking of text-search candidates with image-text-matching heads (BridgeTower, BLIP-2).

Names are imported on first use: the presets are needed by ``pixseek --help``, the models (torch,
transformers) only by a search that re-ranks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pixseek.lazy import lazy_attributes
from pixseek.vocabulary import RERANKER_KINDS, RERANKER_PRESETS

__getattr__ = lazy_attributes(
    __name__,
    {
        "BATCH_SIZE": "pixseek.search.rerank.base",
        "Reranker": "pixseek.search.rerank.base",
        "FeatureCache": "pixseek.search.rerank.cache",
        "load_reranker": "pixseek.search.rerank.loader",
        "RerankedSearch": "pixseek.search.rerank.pipeline",
        "rerank_hits": "pixseek.search.rerank.pipeline",
        "rerank_search": "pixseek.search.rerank.pipeline",
        "CachedScorer": "pixseek.search.rerank.scorer",
        "FillReport": "pixseek.search.rerank.scorer",
        "ImageRef": "pixseek.search.rerank.scorer",
    },
)

if TYPE_CHECKING:
    from pixseek.search.rerank.base import BATCH_SIZE, Reranker
    from pixseek.search.rerank.cache import FeatureCache
    from pixseek.search.rerank.loader import load_reranker
    from pixseek.search.rerank.pipeline import RerankedSearch, rerank_hits, rerank_search
    from pixseek.search.rerank.scorer import CachedScorer, FillReport, ImageRef


__all__ = [
    "BATCH_SIZE",
    "RERANKER_KINDS",
    "RERANKER_PRESETS",
    "CachedScorer",
    "FeatureCache",
    "FillReport",
    "ImageRef",
    "RerankedSearch",
    "Reranker",
    "load_reranker",
    "rerank_hits",
    "rerank_search",
]
