"""Near-duplicate candidates from a collection's own vector index, and the groups pairs form.

Never all pairs: every stored vector asks the index for its ``k`` nearest neighbours, a batch at a
time, and only neighbours at or above the cosine threshold become candidate pairs. A query whose
``k``-th neighbour still passes the threshold (a burst of 30 near-identical shots, or many copies
of one file) is asked again with four times the width, up to ``max_k``, so that a large group is
not cut at ``k``. Union-find then joins the pairs a caller accepts into groups (connected
components): a resized copy of a cropped copy lands in the original's group even when the two
copies are further apart than the threshold.

Which pairs to accept (the cosine, a perceptual hash as a second check) is the service's decision
(:mod:`pixseek.service.duplicates`); this module only finds candidates and joins them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

# (queries, k) -> (scores, ids), each queries x k, best first, -1 ids pad: VectorIndex.search.
NeighbourSearch = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]
DEFAULT_K = 16
MAX_K = 256


@dataclass(frozen=True)
class Pairs:
    """Candidate pairs, each once: ``first[i] < second[i]``, with their cosine similarity."""

    first: np.ndarray  # int64
    second: np.ndarray  # int64
    similarity: np.ndarray  # float32

    def __len__(self) -> int:
        return len(self.first)

    def where(self, keep: np.ndarray) -> Pairs:
        return Pairs(self.first[keep], self.second[keep], self.similarity[keep])

    def ids(self) -> np.ndarray:
        """Every id in a pair, ascending."""
        return np.union1d(self.first, self.second)


def near_pairs(
    chunks: Iterable[tuple[np.ndarray, np.ndarray]],
    search: NeighbourSearch,
    threshold: float,
    *,
    k: int = DEFAULT_K,
    max_k: int = MAX_K,
    progress: Callable[[int], None] | None = None,
) -> Pairs:
    """Pairs of stored vectors with cosine >= ``threshold``, from ``k``-NN queries of every
    (ids, unit vectors) chunk against ``search``; ``progress(vectors done)`` after each chunk."""
    parts: list[Pairs] = []
    done = 0
    for ids, vectors in chunks:
        parts.extend(_chunk_pairs(np.asarray(ids, np.int64), vectors, search, threshold, k, max_k))
        done += len(ids)
        if progress:
            progress(done)
    return _unique(parts)


def _chunk_pairs(
    ids: np.ndarray, vectors: np.ndarray, search: NeighbourSearch, threshold: float, k: int, max_k: int
) -> list[Pairs]:
    parts = []
    rows = np.arange(len(ids))
    width = k + 1  # the query itself comes back too
    while len(rows):
        scores, found = search(vectors[rows], width)
        full = scores.shape[1] == width and width < max_k + 1
        saturated = (scores[:, -1] >= threshold) if full else np.zeros(len(rows), dtype=bool)
        done = ~saturated
        parts.append(_above(ids[rows[done]], scores[done], found[done], threshold))
        rows, width = rows[saturated], min(width * 4, max_k + 1)
    return parts


def _above(ids: np.ndarray, scores: np.ndarray, found: np.ndarray, threshold: float) -> Pairs:
    queries = np.broadcast_to(ids[:, None], found.shape)
    keep = (scores >= threshold) & (found >= 0) & (found != queries)
    first, second = queries[keep], found[keep]
    return Pairs(np.minimum(first, second), np.maximum(first, second), scores[keep].astype(np.float32))


def _unique(parts: list[Pairs]) -> Pairs:
    """Each pair once (found from both sides, or again by a wider query), with its best score."""
    if not parts:
        empty = np.empty(0, np.int64)
        return Pairs(empty, empty, np.empty(0, np.float32))
    first = np.concatenate([p.first for p in parts])
    second = np.concatenate([p.second for p in parts])
    similarity = np.concatenate([p.similarity for p in parts])
    order = np.lexsort((-similarity, second, first))  # by pair, best score first
    first, second, similarity = first[order], second[order], similarity[order]
    starts = np.ones(len(first), dtype=bool)
    starts[1:] = (first[1:] != first[:-1]) | (second[1:] != second[:-1])
    return Pairs(first[starts], second[starts], similarity[starts])


class UnionFind:
    """Disjoint sets of ids, grown by :meth:`union`; a set's root is its smallest id, so the
    groups come out the same whatever order the pairs came in."""

    def __init__(self) -> None:
        self._parent: dict[int, int] = {}

    def find(self, item: int) -> int:
        parent = self._parent
        parent.setdefault(item, item)
        while parent[item] != item:  # path halving: each node on the way now points two up
            parent[item] = parent[parent[item]]
            item = parent[item]
        return item

    def union(self, first: int, second: int) -> None:
        a, b = self.find(first), self.find(second)
        if a != b:
            self._parent[max(a, b)] = min(a, b)

    def union_all(self, members: Sequence[int]) -> None:
        for member in members[1:]:
            self.union(members[0], member)

    def groups(self) -> list[list[int]]:
        """Sets of two or more ids, each ascending, ordered by their smallest id."""
        found: dict[int, list[int]] = {}
        for item in sorted(self._parent):
            found.setdefault(self.find(item), []).append(item)
        return [members for _, members in sorted(found.items()) if len(members) > 1]
