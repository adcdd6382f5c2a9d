"""The trained base of a collection's vector index: built from a snapshot, then never written.

Immutability is what lets the base be memory-mapped read-only and shared by every process that
serves the collection (``IO_FLAG_MMAP_IFC``: a 2 GB Flat maps in milliseconds instead of a second
of reading, and a write to a mapped FAISS index would abort the process). Changes after the
snapshot live beside it, in the owning :class:`~pixseek.store.vector_index.VectorIndex`: new vectors
in an exact delta index, removed ones as tombstones masked at search time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import faiss
import numpy as np

from pixseek.store.ann.plan import IndexPlan
from pixseek.store.ann.source import VectorSource
from pixseek.store.ann.topk import drop_ids, top_k

log = logging.getLogger(__name__)

GPU_MAX_K = 2048  # GPU indexes answer at most k = 2048 and nprobe = 2048
OVERFETCH_TOMBSTONES = 256  # up to this many tombstones are filtered after the search, not in it
_EMPTY_IDS = np.empty(0, dtype=np.int64)
Progress = Callable[[int, int], None]


def gpu_count() -> int:
    """GPUs usable by FAISS: zero unless faiss-gpu is installed and sees a device."""
    get_num_gpus = getattr(faiss, "get_num_gpus", None)
    return get_num_gpus() if get_num_gpus else 0


@dataclass(frozen=True)
class SearchParams:
    """Per-index search knobs; None means the index kind has no such knob (or: keep the stored)."""

    nprobe: int | None = None  # IVF lists visited
    ef_search: int | None = None  # HNSW candidate list size
    k_factor: int | None = None  # IVF-PQ: candidates re-ranked exactly, as a multiple of k

    def overridden_by(self, other: SearchParams | None) -> SearchParams:
        if other is None:
            return self
        return replace(self, **{k: v for k, v in asdict(other).items() if v is not None})

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def default_params(plan: IndexPlan) -> SearchParams:
    """Starting points before tuning (the notes' 1M measurements)."""
    if plan.kind in ("ivf", "ivfsq"):
        return SearchParams(nprobe=min(16, plan.nlist))
    if plan.kind == "ivfpq":
        return SearchParams(nprobe=min(16, plan.nlist), k_factor=4)
    if plan.kind == "hnsw":
        return SearchParams(ef_search=128)
    return SearchParams()


def _new_index(plan: IndexPlan, dim: int) -> faiss.Index:
    return faiss.index_factory(dim, plan.factory_key(), faiss.METRIC_INNER_PRODUCT)


def _train(index: faiss.Index, plan: IndexPlan, source: VectorSource, ids: np.ndarray, seed: int) -> None:
    """k-means on a random sample of the collection (on the GPUs when there are some)."""
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(ids, size=min(len(ids), plan.train_size), replace=False))
    _, vectors = source.by_ids(sample)
    ivf = faiss.extract_index_ivf(index)
    if gpu_count():
        ivf.clustering_index = faiss.index_cpu_to_all_gpus(faiss.IndexFlatIP(index.d))
    log.info("training %s on %d vectors", plan.factory_key(), len(vectors))
    index.train(np.ascontiguousarray(vectors, dtype=np.float32))
    ivf.clustering_index = None


class BaseIndex:
    def __init__(
        self,
        index: faiss.Index,
        ids: np.ndarray,
        plan: IndexPlan,
        params: SearchParams,
        template: bytes | None = None,
    ):
        self.index = index
        self.ids = ids  # sorted: membership tests are binary searches
        self.plan = plan
        self.params = params
        self.template = template  # the trained, empty index: a rebuild without retraining adds to it
        self.measured_recall: float | None = None
        self._gpu: tuple[faiss.Index, SearchParams] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    # ---- building ----------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        plan: IndexPlan,
        source: VectorSource,
        *,
        template: bytes | None = None,
        chunk: int = 50_000,
        progress: Progress | None = None,
        seed: int = 0,
    ) -> BaseIndex:
        """Index every vector of ``source``; trained kinds train on a sample first, unless a
        ``template`` from an earlier build of the same plan is given (a merge, not a retrain)."""
        ids = source.ids()
        if template is not None:
            index = faiss.deserialize_index(np.frombuffer(template, dtype=np.uint8))
        else:
            index = _new_index(plan, source.dim)
            if plan.trained:
                _train(index, plan, source, ids, seed)
                template = faiss.serialize_index(index).tobytes()
        done = 0
        for chunk_ids, vectors in source.chunks(chunk):
            index.add_with_ids(
                np.ascontiguousarray(vectors, dtype=np.float32), np.ascontiguousarray(chunk_ids, np.int64)
            )
            done += len(chunk_ids)
            if progress:
                progress(done, len(ids))
        return cls(index, np.sort(ids), plan, default_params(plan), template)

    # ---- search ------------------------------------------------------------------------------
    def contains(self, ids: np.ndarray) -> np.ndarray:
        if not len(self.ids):
            return np.zeros(len(ids), dtype=bool)
        where = np.searchsorted(self.ids, ids).clip(max=len(self.ids) - 1)
        return self.ids[where] == ids

    def search(
        self,
        queries: np.ndarray,
        k: int,
        params: SearchParams,
        *,
        allowed: np.ndarray | None = None,
        tombstones: np.ndarray = _EMPTY_IDS,
        refine: VectorSource | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top k by inner product, never a tombstoned id, only ``allowed`` ids if given (then k
        results whenever k allowed vectors are in the base: the search widens until they are)."""
        fetch = k * (params.k_factor or 1) if self.plan.refines else k
        selectors: list = []  # SWIG keeps no references: the inner selectors must outlive the search
        post_filter = _EMPTY_IDS
        if allowed is not None:
            selectors.append(faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64)))
        if len(tombstones) and (allowed is not None or len(tombstones) > OVERFETCH_TOMBSTONES):
            batch = faiss.IDSelectorBatch(np.ascontiguousarray(tombstones, dtype=np.int64))
            selectors += [batch, faiss.IDSelectorNot(batch)]
            if allowed is not None:
                selectors.append(faiss.IDSelectorAnd(selectors[0], selectors[-1]))
        elif len(tombstones):
            post_filter, fetch = tombstones, fetch + len(tombstones)
        selector = selectors[-1] if selectors else None

        scores, ids = self._search(queries, fetch, params, selector)
        if allowed is not None and self.plan.kind != "flat":
            scores, ids = self._widen(queries, fetch, params, selector, allowed, scores, ids)
        if len(post_filter):
            scores, ids = drop_ids(scores, ids, post_filter, fetch - len(post_filter))
        if self.plan.refines and refine is not None:
            return exact_rerank(queries, ids, refine, k)
        return top_k(scores, ids, k)

    def _widen(self, queries, fetch, params, selector, allowed, scores, ids):
        """A filter can leave the probed lists (or the HNSW beam) short of k allowed vectors: probe
        more until every query has min(k, allowed in base) results, or the whole index is visited."""
        need = min(fetch, int(self.contains(np.asarray(allowed, dtype=np.int64)).sum()))
        limit = self.plan.nlist if self.plan.trained else max(len(self), 1)
        while (ids >= 0).sum(axis=1).min(initial=need) < need:
            current = params.nprobe if self.plan.trained else params.ef_search
            if current >= limit:
                break
            widened = min(limit, max(current * 4, fetch))
            params = replace(params, **({"nprobe": widened} if self.plan.trained else {"ef_search": widened}))
            scores, ids = self._search(queries, fetch, params, selector)
        return scores, ids

    def _search(self, queries, k, params: SearchParams, selector) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = max(1, min(k, len(self)))
        if selector is None and (gpu := self._gpu_index(k, params)) is not None:
            return gpu.search(queries, k)
        if self.plan.trained:
            search_params = faiss.SearchParametersIVF(nprobe=params.nprobe or 1)
        elif self.plan.kind == "hnsw":
            search_params = faiss.SearchParametersHNSW(efSearch=max(params.ef_search or 16, k))
        elif selector is None:
            return self.index.search(queries, k)  # no parameters: FAISS's BLAS path for batches
        else:
            search_params = faiss.SearchParameters()
        if selector is not None:
            search_params.sel = selector
        return self.index.search(queries, k, params=search_params)

    def _gpu_index(self, k: int, params: SearchParams) -> faiss.Index | None:
        """A GPU copy (sharded over all GPUs) for unfiltered Flat/IVF searches; the CPU base stays
        the truth and is what is saved. HNSW has no GPU version; GPU limits keep large k on the CPU."""
        if gpu_count() == 0 or self.plan.kind == "hnsw" or k > GPU_MAX_K or (params.nprobe or 0) > GPU_MAX_K:
            return None
        if self._gpu is None or self._gpu[1] != params:
            options = faiss.GpuMultipleClonerOptions()
            options.shard = True
            gpu = faiss.index_cpu_to_all_gpus(self.index, co=options)
            if params.nprobe:
                faiss.GpuParameterSpace().set_index_parameter(gpu, "nprobe", params.nprobe)
            self._gpu = (gpu, params)
        return self._gpu[0]

    def reconstruct(self, image_id: int) -> np.ndarray | None:
        """The stored vector of an id, for index kinds that keep raw vectors by id."""
        if self.plan.kind in ("flat", "hnsw") and self.contains(np.array([image_id]))[0]:
            return self.index.reconstruct(int(image_id))
        return None

    # ---- persistence -------------------------------------------------------------------------
    def write(self, index_path: Path, ids_path: Path, template_path: Path | None) -> None:
        """Plain writes: the caller writes under fresh names and publishes them by manifest."""
        faiss.write_index(self.index, str(index_path))
        np.save(ids_path, self.ids)
        if template_path is not None and self.template is not None:
            template_path.write_bytes(self.template)

    @classmethod
    def read(
        cls,
        index_path: Path,
        ids_path: Path,
        template_path: Path | None,
        plan: IndexPlan,
        params: SearchParams,
        *,
        mmap: bool = True,
    ) -> BaseIndex:
        index = faiss.read_index(str(index_path), faiss.IO_FLAG_MMAP_IFC if mmap else 0)
        ids = np.load(ids_path, mmap_mode="r" if mmap else None)
        template = template_path.read_bytes() if template_path and template_path.exists() else None
        if len(ids) != index.ntotal:
            raise ValueError(f"{ids_path} lists {len(ids)} ids for {index.ntotal} vectors")
        return cls(index, ids, plan, params, template)


def exact_rerank(
    queries: np.ndarray, candidates: np.ndarray, source: VectorSource, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Re-score each query's candidate ids with the exact stored vectors and keep the k best.
    Candidates the source no longer has (removed meanwhile) drop out."""
    unique = np.unique(candidates[candidates >= 0])
    found, vectors = source.by_ids(unique)
    if not len(found):
        return top_k(np.zeros(candidates.shape, np.float32), np.full(candidates.shape, -1), k)
    order = np.argsort(found)
    found, vectors = found[order], np.ascontiguousarray(vectors[order], dtype=np.float32)
    where = np.searchsorted(found, candidates).clip(max=len(found) - 1)
    present = (candidates >= 0) & (found[where] == candidates)
    exact = np.empty(candidates.shape, dtype=np.float32)
    for start in range(0, len(queries), 64):  # each query against its own candidates only
        block = slice(start, start + 64)
        exact[block] = np.einsum("qd,qcd->qc", queries[block], vectors[where[block]])
    return top_k(exact, np.where(present, candidates, -1), k)
