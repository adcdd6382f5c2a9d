"""Re-rankers from the settings: which ones a choice names, how many candidates they score, and
loading one with its feature cache.

The models (torch, transformers) are imported by the functions that load them: a search that
does not re-rank never pays for them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from pixseek.config import Settings
from pixseek.errors import PixseekError
from pixseek.store.records import CollectionInfo
from pixseek.store.repository import Store
from pixseek.vocabulary import RerankChoice, choices

if TYPE_CHECKING:
    from pixseek.media.files import FileOpener
    from pixseek.search.rerank import CachedScorer, FillReport, ImageRef

# Candidates re-ranked per text query unless rerank_k says otherwise. On a CPU, cached BLIP-2 costs
# ~60 ms a pair in bf16 (docs/benchmarks.md), so 50 keeps a query within a few seconds; on CUDA the
# 128 of BLIP-2's own retrieval evaluation costs well under a second.
DEFAULT_RERANK_K = {"cpu": 50, "cuda": 128}


def kinds(choice: str) -> tuple[str, ...]:
    """The re-rankers a ``--rerank`` choice names, in a fixed order (fusion does not depend on it,
    but the columns of a report do)."""
    from pixseek.vocabulary import RERANKER_KINDS

    if choice not in set(RerankChoice):
        raise PixseekError(f"unknown re-ranker {choice!r}; choose {choices(RerankChoice)}")
    if choice == RerankChoice.NONE:
        return ()
    if choice == RerankChoice.BOTH:
        return RERANKER_KINDS
    return (RerankChoice(choice),)


def default_k(settings: Settings) -> int:
    """``rerank_k`` from the settings, else what the device can score within a few seconds."""
    from pixseek.embedding.runtime import resolve_device

    if settings.rerank_k is not None:
        return settings.rerank_k
    return DEFAULT_RERANK_K[resolve_device(settings.device).type]


def load_scorer(settings: Settings, kind: str, opener: FileOpener) -> CachedScorer:
    """The re-ranker of ``kind`` from its configured checkpoint, with its feature cache; it reads
    candidate files through ``opener``."""
    from pixseek.search.rerank import CachedScorer, FeatureCache, load_reranker

    name = settings.bridgetower_model if kind == "bridgetower" else settings.blip2_model
    reranker = load_reranker(kind, name, device=settings.device, precision=settings.precision)
    cache = None
    if settings.rerank_cache_mb > 0:
        cache = FeatureCache(
            settings.rerank_cache_dir / reranker.features_id,
            settings.rerank_cache_mb * 2**20,
            reranker.feature_shape,
            reranker.feature_dtype,
        )
    return CachedScorer(reranker, cache, opener)


def fill_cache(
    store: Store,
    collection: Callable[[], CollectionInfo],
    scorer: CachedScorer,
    progress: Callable[[int, int], None] | None = None,
) -> FillReport:
    """Cache ``scorer``'s image features for the collection's images, up to its byte budget.
    ``collection`` is looked up after the cache is checked: a cache that is off is said first."""
    from pixseek.search.rerank import BATCH_SIZE, ImageRef

    if scorer.cache is None:
        raise PixseekError("the re-ranker cache is off (rerank_cache_mb is 0); nothing to fill")
    ids = store.indexed_ids(collection().id).tolist()

    def refs() -> Iterator[ImageRef]:
        for start in range(0, len(ids), 8 * BATCH_SIZE):
            for record in store.images(ids[start : start + 8 * BATCH_SIZE]).values():
                yield ImageRef.from_record(record)

    return scorer.fill(refs(), len(ids), progress)
