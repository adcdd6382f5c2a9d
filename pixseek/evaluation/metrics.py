"""Retrieval metrics over image-caption pairs: recall@k and mean/median rank, both directions.

Datasets such as Flickr30K or COCO (Karpathy splits) have several captions per image. Text->image:
each caption has exactly one correct image. Image->text: an image is found at the rank of its best
ranked caption (the convention of the CLIP and BLIP-2 papers). Ties count against the query (an
item scoring equal to the relevant one ranks ahead of it), so a constant model scores worst, not best.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RetrievalMetrics:
    recall: dict[int, float]  # k -> share of queries whose relevant item is in the top k
    mean_rank: float
    median_rank: float
    queries: int


def first_relevant_ranks(similarity: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """1-based rank of the best relevant item per query row.

    ``similarity`` is (queries, items); ``relevant`` a boolean mask of the same shape with at least
    one True per row.
    """
    if similarity.shape != relevant.shape:
        raise ValueError(f"similarity {similarity.shape} and relevance {relevant.shape} differ in shape")
    if not relevant.any(axis=1).all():
        raise ValueError("every query needs at least one relevant item")
    best_relevant = np.where(relevant, similarity, -np.inf).max(axis=1, keepdims=True)
    # Irrelevant items at or above the best relevant score rank ahead of it (ties count against).
    ahead = ((similarity >= best_relevant) & ~relevant).sum(axis=1)
    return ahead + 1


def summarize(ranks: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> RetrievalMetrics:
    ranks = np.asarray(ranks)
    return RetrievalMetrics(
        recall={k: float(np.mean(ranks <= k)) for k in ks},
        mean_rank=float(np.mean(ranks)),
        median_rank=float(np.median(ranks)),
        queries=int(ranks.size),
    )


def text_to_image(
    text_embeddings: np.ndarray, image_embeddings: np.ndarray, caption_image: np.ndarray, ks=(1, 5, 10)
) -> RetrievalMetrics:
    """Each caption queries the images; ``caption_image[c]`` is the index of caption c's image."""
    caption_image = np.asarray(caption_image)
    relevant = np.arange(len(image_embeddings))[None, :] == caption_image[:, None]
    return summarize(first_relevant_ranks(text_embeddings @ image_embeddings.T, relevant), ks)


def image_to_text(
    image_embeddings: np.ndarray, text_embeddings: np.ndarray, caption_image: np.ndarray, ks=(1, 5, 10)
) -> RetrievalMetrics:
    """Each image queries the captions; any of its own captions counts as a hit."""
    caption_image = np.asarray(caption_image)
    relevant = np.arange(len(image_embeddings))[:, None] == caption_image[None, :]
    return summarize(first_relevant_ranks(image_embeddings @ text_embeddings.T, relevant), ks)
