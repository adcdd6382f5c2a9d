"""Re-ranking of text-search candidates with image-text-matching heads (BridgeTower, BLIP-2)."""

from pixseek.search.rerank.base import BATCH_SIZE, Reranker
from pixseek.search.rerank.cache import FeatureCache
from pixseek.search.rerank.loader import RERANKER_KINDS, RERANKER_PRESETS, load_reranker
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
