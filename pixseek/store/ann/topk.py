"""Merging ranked result lists for inner product (higher is better), as FAISS lays them out:
(queries, k) score and id matrices, id -1 marking an empty slot."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

EMPTY_SCORE = np.float32(-np.inf)


def top_k(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best of each row (ids < 0 never win), best first; ties keep their input order."""
    scores = np.where(ids < 0, EMPTY_SCORE, scores).astype(np.float32, copy=False)
    if scores.shape[1] > k:
        # argsort on the negated scores, stable: equal scores keep the order they came in
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    else:
        order = np.argsort(-scores, axis=1, kind="stable")
    best_scores = np.take_along_axis(scores, order, axis=1)
    best_ids = np.where(np.isneginf(best_scores), -1, np.take_along_axis(ids, order, axis=1))
    if best_scores.shape[1] < k:  # pad like FAISS does when fewer than k exist
        pad = k - best_scores.shape[1]
        best_scores = np.pad(best_scores, ((0, 0), (0, pad)), constant_values=EMPTY_SCORE)
        best_ids = np.pad(best_ids, ((0, 0), (0, pad)), constant_values=-1)
    return best_scores, best_ids.astype(np.int64, copy=False)


def merge_top_k(results: Sequence[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best per query over several result lists for the same queries (shards, segments)."""
    scores = np.concatenate([s for s, _ in results], axis=1)
    ids = np.concatenate([i for _, i in results], axis=1)
    return top_k(scores, ids, k)


def drop_ids(
    scores: np.ndarray, ids: np.ndarray, excluded: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Results without ``excluded`` ids (sorted array), cut to k: an over-fetch filter."""
    if len(excluded):
        where = np.searchsorted(excluded, ids).clip(max=len(excluded) - 1)
        ids = np.where(excluded[where] == ids, -1, ids)
    return top_k(scores, ids, k)
