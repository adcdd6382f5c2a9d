"""Merging ranked result lists for inner product (higher is better), as FAISS lays them out:
(queries, k) score and id matrices, id -1 marking an empty slot. One rule for every merge (base and
delta, shards, exact re-ranking), so the same vectors give the same answer however they are split."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

EMPTY_SCORE = np.float32(-np.inf)
EMPTY_ID = -1


def top_k(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best of each row, best first, padded with (-inf, -1) where fewer exist; id -1 never wins.

    Ties: at the cut the smaller id wins; within equal scores the larger id comes first, as FAISS's
    heap hands them out (so a merge of shards reproduces one index's order)."""
    scores = np.asarray(scores, dtype=np.float32)
    ids = np.asarray(ids, dtype=np.int64)
    out_scores = np.full((len(ids), k), EMPTY_SCORE, dtype=np.float32)
    out_ids = np.full((len(ids), k), EMPTY_ID, dtype=np.int64)
    if ids.shape[1] == 0 or k == 0:
        return out_scores, out_ids
    valid = ids != EMPTY_ID
    negated = -scores.astype(np.float64)
    chosen = np.lexsort((ids, negated, ~valid), axis=1)[:, :k]  # the last key sorts first
    chosen_ids = np.take_along_axis(ids, chosen, axis=1)
    chosen = np.take_along_axis(
        chosen, np.lexsort((-chosen_ids, np.take_along_axis(negated, chosen, axis=1)), axis=1), axis=1
    )
    width = chosen.shape[1]
    picked = np.take_along_axis(valid, chosen, axis=1)
    out_scores[:, :width] = np.where(picked, np.take_along_axis(scores, chosen, axis=1), EMPTY_SCORE)
    out_ids[:, :width] = np.where(picked, np.take_along_axis(ids, chosen, axis=1), EMPTY_ID)
    return out_scores, out_ids


def merge_top_k(results: Sequence[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best per query over several result lists for the same queries (shards, segments)."""
    scores = np.concatenate([np.asarray(s, dtype=np.float32) for s, _ in results], axis=1)
    ids = np.concatenate([np.asarray(i, dtype=np.int64) for _, i in results], axis=1)
    return top_k(scores, ids, k)


def drop_ids(
    scores: np.ndarray, ids: np.ndarray, excluded: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Results without ``excluded`` ids (sorted array), cut to k: an over-fetch filter."""
    if len(excluded):
        where = np.searchsorted(excluded, ids).clip(max=len(excluded) - 1)
        ids = np.where(excluded[where] == ids, EMPTY_ID, ids)
    return top_k(scores, ids, k)
