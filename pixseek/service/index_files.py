"""Loading, rebuilding and deleting a collection's FAISS index, with the options the settings give.

SQL is the source of truth: an index is loaded from its folder and brought in step with the store
(reconciled), or rebuilt from the stored embeddings without the model. faiss is imported here, on
first use, so that commands which never search (``rm --undo``, ``--help``) do not load it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from pixseek.config import Settings, parse_bytes
from pixseek.store.records import CollectionInfo
from pixseek.store.repository import Store

if TYPE_CHECKING:
    from pixseek.store.index_options import IndexOptions
    from pixseek.store.vector_index import VectorIndex


def index_options(settings: Settings, background: bool) -> IndexOptions:
    """``background``: a long-running process rebuilds the index's base in a thread while serving."""
    from pixseek.store.ann.base import SearchParams
    from pixseek.store.index_options import IndexOptions

    s = settings
    return IndexOptions(
        kind=s.index_type,
        memory_budget=parse_bytes(s.memory_budget) if s.memory_budget else None,
        recall_target=s.recall_target,
        overrides=SearchParams(nprobe=s.nprobe, ef_search=s.ef_search, k_factor=s.k_factor),
        background=background,
    )


def load(
    store: Store, collection: CollectionInfo, folder: Path, options: IndexOptions
) -> tuple[VectorIndex, int, int]:
    """The index saved in ``folder``, in step with SQL (saved again if that changed it):
    (index, vectors added, vectors removed)."""
    from pixseek.store.ann.source import StoreVectors
    from pixseek.store.vector_index import VectorIndex

    vectors = VectorIndex.load(
        folder,
        collection.dim,
        source=StoreVectors(store, collection.id, collection.dim),
        options=options,
    )
    added, removed = vectors.reconcile(store, collection)
    if added or removed:
        vectors.save(folder)
    return vectors, added, removed


def rebuild(store: Store, collection: CollectionInfo, folder: Path, options: IndexOptions) -> VectorIndex:
    """A new index from the embeddings stored in SQL, saved to ``folder``."""
    from pixseek.store.vector_index import VectorIndex

    vectors = VectorIndex.rebuild(store, collection, options)
    vectors.save(folder)
    return vectors


def delete(folder: Path) -> None:
    """The index folder and the single-file layouts older versions saved next to it."""
    from pixseek.store.index_folder import legacy_paths

    shutil.rmtree(folder, ignore_errors=True)
    for path in legacy_paths(folder):
        path.unlink(missing_ok=True)
