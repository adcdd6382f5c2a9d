"""Approximate nearest-neighbour machinery behind :class:`pixseek.store.vector_index.VectorIndex`:
which FAISS index fits a collection (plan), where its vectors come from (source), the immutable
trained base index (base), and the search parameters that meet a recall target (tuning)."""
