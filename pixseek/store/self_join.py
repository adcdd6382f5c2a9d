"""How a collection's stored vectors each ask for their nearest neighbours without an all-pairs scan.

Duplicate finding queries the index with every vector it holds. What answers depends on the index
the collection has (docs/benchmarks.md, "Duplicates", has the figures):

* an IVF base (IVF, IVF-SQ8, IVF-PQ: collections over 100k vectors): the collection's own index,
  probing ``SCAN_NPROBE`` lists instead of the tuned number. Near-duplicates lie far closer to
  each other than the neighbours a search is tuned to find, so they nearly always fall in the
  query's nearest lists (planted pairs found: see the benchmark);
* an exact index (Flat, or only the in-memory delta) of up to ``EXACT_SCAN_MAX`` vectors: as it
  is: n x n products, seconds;
* a larger exact index: a temporary IVF over the stored vectors, built for this scan and dropped
  after it. The exact scan of 100k vectors against themselves is the all-pairs matrix product
  (220 s on 2 cores), the temporary IVF's build and scan 16 s, with every planted pair found;
* HNSW: as it is.

Deletions and additions since the base was built (tombstones, delta) are what the index's own
search handles. An IVF-PQ base re-ranks its candidates from SQL, batch by batch: correct, slower.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pixseek.store.ann.base import BaseIndex, SearchParams
from pixseek.store.ann.plan import IndexPlan, nlist_for
from pixseek.store.ann.source import VectorSource
from pixseek.store.vector_index import VectorIndex
from pixseek.vocabulary import IndexKind

EXACT_SCAN_MAX = 20_000
SCAN_NPROBE = 2  # lists probed per query (bench/bench_duplicates.py: recall of planted pairs)

NeighbourSearch = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]


def neighbour_search(index: VectorIndex, source: VectorSource | None = None) -> NeighbourSearch:
    """``search(queries, k)`` over ``index`` for its own vectors, per the rules above; ``source``
    (default: the index's) holds the vectors a temporary IVF is built from."""
    base = index.base
    if base is not None and base.plan.trained:
        nprobe = min(SCAN_NPROBE, base.params.nprobe or SCAN_NPROBE)
        params = SearchParams(nprobe=nprobe)
        return lambda queries, k: index.search(queries, k, None, params)
    if len(index) <= EXACT_SCAN_MAX or (base is not None and base.plan.kind == IndexKind.HNSW):
        return lambda queries, k: index.search(queries, k)
    source = source or index.source
    if source is None:
        raise ValueError("a temporary scan index needs the stored vectors (a VectorSource)")
    # Half the lists a collection of this size would get: k-means costs lists squared, the scan
    # only lists probed / lists of the vectors (the optimum measured at 100k lay near 600 lists).
    plan = IndexPlan(IndexKind.IVF, nlist=max(1, nlist_for(len(index)) // 2))
    scan = VectorIndex.from_base(BaseIndex.build(plan, source), source)
    params = SearchParams(nprobe=SCAN_NPROBE)
    return lambda queries, k: scan.search(queries, k, None, params)
