"""Which FAISS index a collection gets, from its size and a memory budget.

The choice follows the measurements in the project notes (faiss-cpu 1.15, 512-d, 2 cores):

* exact ``Flat`` while a brute-force scan stays cheap (100k vectors: ~10 ms a query) — no
  training, recall 1.0;
* ``IVF`` (nlist ~ 4 sqrt(N), trained on >= 39 points per list) above that: at 1M vectors
  IVF4096 with nprobe 16 gave recall@10 0.997 at 28x the QPS of Flat;
* ``IVF-SQ8`` (one byte a dimension, a quarter of the raw vectors) when the raw vectors do not fit
  the memory budget but these codes do: 8-bit scalar quantisation barely moves inner products, so
  it ranks like IVF-Flat without re-ranking;
* ``IVF-PQ`` (64 bytes a vector) with exact re-ranking from the stored vectors when not even that
  fits: PQ alone gave recall@10 0.61 at 1M, re-ranking 4-10x the candidates brings it to
  0.95-0.995 (at 10M, where neighbours crowd closer than PQ's error, it needs deeper re-ranking);
* ``HNSW`` only on request: it cannot remove vectors (pixseek masks them with tombstones), builds
  5-10x slower than IVF and gave lower recall (0.924 at efSearch 128) at 1M.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

from pixseek.vocabulary import IndexKind, choices

_TRAINED = frozenset({IndexKind.IVF, IndexKind.IVFSQ, IndexKind.IVFPQ})

FLAT_MAX = 100_000  # above this many vectors an exact scan costs > ~10 ms a query on one core
MIN_TRAIN_PER_LIST = 39  # FAISS warns below this many training points per centroid
TRAIN_PER_LIST = 50  # FAISS asks for >= 39; k-means cost grows with points x lists
MAX_TRAIN = 256_000  # more points barely move the centroids
MAX_NLIST = 4096  # beyond this, assigning vectors to lists dominates build time on a CPU (10M: ~4 min)
ID_BYTES = 8


@dataclass(frozen=True)
class IndexPlan:
    kind: IndexKind  # never AUTO: a plan is what was chosen
    nlist: int = 0  # IVF lists
    pq_m: int = 0  # PQ sub-quantizers (bytes per vector at 8 bits)
    hnsw_m: int = 32

    @property
    def trained(self) -> bool:
        return self.kind in _TRAINED

    @property
    def refines(self) -> bool:
        """Whether candidates are re-ranked exactly from the stored vectors (lossy codes)."""
        return self.kind == "ivfpq"

    @property
    def train_size(self) -> int:
        return min(MAX_TRAIN, TRAIN_PER_LIST * self.nlist) if self.trained else 0

    def factory_key(self) -> str:
        return {
            "flat": "IDMap2,Flat",
            "ivf": f"IVF{self.nlist},Flat",
            "ivfsq": f"IVF{self.nlist},SQ8",
            "ivfpq": f"IVF{self.nlist},PQ{self.pq_m}np",  # np: no polysemous training (30x the cost)
            "hnsw": f"IDMap2,HNSW{self.hnsw_m}",
        }[self.kind]

    def bytes_per_vector(self, dim: int) -> int:
        """Index memory per vector (codes + id), as FAISS stores it."""
        return {
            "flat": 4 * dim + 2 * ID_BYTES,  # IDMap2 keeps the id map and its reverse
            "ivf": 4 * dim + ID_BYTES,
            "ivfsq": dim + ID_BYTES,
            "ivfpq": self.pq_m + ID_BYTES,
            "hnsw": 4 * dim + 2 * ID_BYTES + 2 * 4 * self.hnsw_m,  # ~2M links at level 0
        }[self.kind]

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> IndexPlan:
        return cls(**{**data, "kind": IndexKind(data["kind"])})


def default_memory_budget() -> int:
    """Half of the memory available now: the index shares the machine with the model and SQL."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 // 2
    except OSError:
        pass
    pages = os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 0
    return max(pages * os.sysconf("SC_PAGE_SIZE") // 4, 1 << 30) if pages else 4 << 30


def nlist_for(n: int) -> int:
    """A power of two near 4 sqrt(N), with enough training points per list."""
    target = 4 * max(n, 1) ** 0.5
    nlist = 1 << max(0, round(target).bit_length() - 1)
    if nlist * 1.5 < target:
        nlist *= 2
    while nlist > 1 and nlist * MIN_TRAIN_PER_LIST > n:
        nlist //= 2
    return max(1, min(nlist, MAX_NLIST))


def pq_m_for(dim: int, n: int, budget: int) -> int:
    """The largest PQ code (bytes a vector) that divides ``dim`` and fits the budget; at most dim/8,
    beyond which re-ranking gains more recall per byte than longer codes."""
    for m in (64, 48, 32, 24, 16, 8, 4):
        if m <= max(dim // 8, 4) and dim % m == 0 and n * (m + ID_BYTES) <= budget:
            return m
    return next(m for m in (8, 4, 2, 1) if dim % m == 0)


def choose_plan(n: int, dim: int, memory_budget: int, kind: str = IndexKind.AUTO) -> IndexPlan:
    """The index for ``n`` vectors of ``dim`` within ``memory_budget`` bytes (or of ``kind``)."""
    if kind not in set(IndexKind):
        raise ValueError(f"unknown index type {kind!r}; choose {choices(IndexKind)}")
    chosen = IndexKind(kind)
    if chosen == IndexKind.AUTO:
        raw_fits = n * (4 * dim + 2 * ID_BYTES) <= memory_budget
        if n <= FLAT_MAX and raw_fits:
            chosen = IndexKind.FLAT
        elif raw_fits:
            chosen = IndexKind.IVF
        elif n * (dim + ID_BYTES) <= memory_budget:
            chosen = IndexKind.IVFSQ
        else:
            chosen = IndexKind.IVFPQ
    if chosen in _TRAINED and n < MIN_TRAIN_PER_LIST:
        chosen = IndexKind.FLAT  # nothing to train on yet
    if chosen in (IndexKind.FLAT, IndexKind.HNSW):
        return IndexPlan(chosen)
    nlist = nlist_for(n)
    if chosen in (IndexKind.IVF, IndexKind.IVFSQ):
        return IndexPlan(chosen, nlist=nlist)
    return IndexPlan(IndexKind.IVFPQ, nlist=nlist, pq_m=pq_m_for(dim, n, memory_budget))
