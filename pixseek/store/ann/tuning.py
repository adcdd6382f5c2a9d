"""Search parameters chosen by measurement: the cheapest setting whose recall@10 against exact
search, on a sample of the collection's own vectors, meets the target.

Queries are sampled from the collection and their own id is left out of both the exact and the
approximate answer, so recall is measured on neighbours, not on finding a vector itself. The
chosen parameters and the recall they gave are stored with the index.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace

import faiss
import numpy as np

from pixseek.store.ann.base import BaseIndex, SearchParams
from pixseek.store.ann.source import VectorSource
from pixseek.store.ann.topk import merge_top_k

# (parameters, recall@10 measured with them, seconds the measurement took)
Measured = tuple[SearchParams, float, float]

log = logging.getLogger(__name__)

RECALL_K = 10
K_FACTORS = (2, 4, 8, 16, 32, 64)
PLATEAU = 0.001  # recall gained by doubling the effort below which a sweep stops


def exact_neighbours(source: VectorSource, queries: np.ndarray, k: int) -> np.ndarray:
    """Brute-force top-k ids over every vector of ``source``, streamed in chunks."""
    best = (np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64))
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    for ids, vectors in source.chunks():
        scores, rows = faiss.knn(
            queries, np.ascontiguousarray(vectors), min(k, len(ids)), faiss.METRIC_INNER_PRODUCT
        )
        best = merge_top_k([best, (scores, np.where(rows >= 0, ids[rows], -1))], k)
    return best[1]


def _without_self(ids: np.ndarray, self_ids: np.ndarray, k: int) -> np.ndarray:
    rows = [row[(row != own) & (row >= 0)][:k] for row, own in zip(ids, self_ids, strict=True)]
    return np.array([np.pad(row, (0, k - len(row)), constant_values=-1) for row in rows])


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Share of the true neighbours found, over all queries (empty slots of ``truth`` don't count)."""
    hits = sum(len(np.intersect1d(f[f >= 0], t[t >= 0])) for f, t in zip(found, truth, strict=True))
    return hits / max(int((truth >= 0).sum()), 1)


class RecallProbe:
    """A fixed query sample with its exact answers, to score any parameter setting of a base."""

    def __init__(self, source: VectorSource, base: BaseIndex, *, queries: int = 500, seed: int = 0):
        rng = np.random.default_rng(seed)
        chosen = np.sort(rng.choice(base.ids, size=min(queries, len(base)), replace=False))
        self.self_ids, self.queries = source.by_ids(chosen)
        self.source, self.base = source, base
        self.truth = _without_self(
            exact_neighbours(source, self.queries, RECALL_K + 1), self.self_ids, RECALL_K
        )

    def measure(self, params: SearchParams) -> tuple[float, float]:
        """(recall@10, seconds for the whole sample in one batch)."""
        started = time.perf_counter()
        _, ids = self.base.search(self.queries, RECALL_K + 1, params, refine=self.source)
        seconds = time.perf_counter() - started
        return recall(_without_self(ids, self.self_ids, RECALL_K), self.truth), seconds


def _smallest_meeting(
    probe: RecallProbe,
    params: SearchParams,
    field: str,
    values: Sequence[int],
    target: float,
    *,
    within_seconds: float = float("inf"),
) -> Measured:
    """The first of ``values`` (ascending cost) whose recall meets the target, else the best seen.

    The sweep stops early once a setting costs more than ``within_seconds`` (a cheaper solution is
    already known) or recall stops growing (it has reached what this setting family can give:
    sweeping IVF-PQ with a shallow re-ranking up to every list costs minutes at 10M vectors)."""
    best: Measured | None = None
    previous = -1.0
    for value in values:
        candidate = replace(params, **{field: value})
        measured, seconds = probe.measure(candidate)
        if best is None or measured > best[1]:
            best = (candidate, measured, seconds)
        if measured >= target or seconds > within_seconds or measured - previous < PLATEAU:
            break
        previous = measured
    assert best is not None, "no values to sweep"
    return best


def tune(base: BaseIndex, source: VectorSource, target: float = 0.95, *, queries: int = 500) -> float:
    """Set ``base.params`` to the cheapest setting meeting ``target``; returns its recall@10."""
    plan = base.plan
    if plan.kind == "flat" or len(base) <= RECALL_K + 1:
        base.measured_recall = 1.0
        return 1.0
    probe = RecallProbe(source, base, queries=queries)
    if plan.kind == "hnsw":
        choice = _smallest_meeting(probe, base.params, "ef_search", [16, 32, 64, 128, 256, 512, 1024], target)
    else:
        nprobes = [
            n for n in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192) if n < plan.nlist
        ]
        nprobes.append(plan.nlist)
        if plan.kind in ("ivf", "ivfsq"):
            choice = _smallest_meeting(probe, base.params, "nprobe", nprobes, target)
        else:  # the fastest (k_factor, nprobe) pair meeting the target; fewer candidates need more lists
            options: list[Measured] = []
            for factor in sorted(K_FACTORS, reverse=True):  # deep re-ranking meets it soonest
                fastest = min((o[2] for o in options if o[1] >= target), default=float("inf"))
                params = replace(base.params, k_factor=factor)
                options.append(
                    _smallest_meeting(probe, params, "nprobe", nprobes, target, within_seconds=fastest)
                )
            meeting = [option for option in options if option[1] >= target]
            choice = min(meeting, key=lambda o: o[2]) if meeting else max(options, key=lambda o: o[1])
    base.params, base.measured_recall = choice[0], choice[1]
    if choice[1] < target:
        log.warning("recall target %.3f not reached; best %.3f with %s", target, choice[1], choice[0])
    log.info("tuned %s: %s, recall@10 %.3f", plan.factory_key(), choice[0].to_json(), choice[1])
    return choice[1]
