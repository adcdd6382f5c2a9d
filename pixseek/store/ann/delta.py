"""The delta of a collection's vector index: an exact in-memory index of the vectors added since
the base was built, searched beside it.

Its three operations are shared by the index that searches and updates it
(:mod:`pixseek.store.vector_index`) and by the code that saves and loads it
(:mod:`pixseek.store.index_folder`), so they live apart from both.
"""

from __future__ import annotations

import faiss
import numpy as np


def new_delta(dim: int) -> faiss.Index:
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def delta_ids(delta: faiss.Index) -> np.ndarray:
    return faiss.vector_to_array(delta.id_map).astype(np.int64)


def delta_vectors(delta: faiss.Index) -> np.ndarray:
    if delta.ntotal == 0:
        return np.empty((0, delta.d), dtype=np.float32)
    return delta.index.reconstruct_n(0, delta.ntotal)  # in id-map order, like delta_ids
