"""The folders a collection was indexed from, and the paths ``pixseek rm`` keeps out of it.

Both are rows of the store (``FOLDER_ROOT``, ``FOLDER_EXCLUDED``), so that every later ``index``,
``watch`` and ``serve`` honours them without being told again; the files themselves stay on disk.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pixseek.errors import NotFoundError
from pixseek.indexer.walker import is_under
from pixseek.store.models import FOLDER_EXCLUDED, FOLDER_ROOT
from pixseek.store.records import ChangeBatch, CollectionInfo
from pixseek.store.repository import Store

if TYPE_CHECKING:
    from pixseek.store.vector_index import VectorIndex  # faiss: imported by whoever loads an index


@dataclass(frozen=True)
class Removal:
    """What :meth:`Library.remove` did: images that left the collection, paths now kept out."""

    removed: int
    excluded: list[str]


def roots(store: Store, collection: CollectionInfo | None) -> list[str]:
    """Folders the collection was indexed from (``serve`` serves these when given no --root)."""
    return store.folders(collection.id, FOLDER_ROOT) if collection else []


def exclusions(store: Store, collection: CollectionInfo | None) -> list[str]:
    """Paths ``pixseek rm`` removed: index, watch and serve keep them out."""
    return store.folders(collection.id, FOLDER_EXCLUDED) if collection else []


def remove(
    store: Store,
    collection: CollectionInfo,
    vectors: VectorIndex,
    index_path: Path,
    paths: Sequence[Path | str],
) -> Removal:
    """Images at or under ``paths`` leave the collection and its index, and the paths are kept out
    of later runs. A path that matches nothing is an error, and then nothing changes: a typo must
    not record an exclusion that silently keeps a later folder out."""
    absolute = [os.path.abspath(path) for path in paths]
    rows = {path: store.known_files(collection.id, [path]) for path in absolute}
    unmatched = [str(given) for given, path in zip(paths, absolute, strict=True) if not rows[path]]
    if unmatched:
        raise NotFoundError(
            f"nothing in collection {collection.name!r} at {', '.join(unmatched)}; nothing removed "
            "(`pixseek status` lists what is kept out)"
        )
    ids = sorted({row.id for known in rows.values() for row in known.values()})
    changes = store.apply(collection.id, ChangeBatch(deleted=ids))
    vectors.update(changes.added_ids, changes.added_vectors, changes.removed_ids, changes.generation)
    vectors.save(index_path)
    store.add_folders(collection.id, FOLDER_EXCLUDED, absolute)
    return Removal(removed=len(ids), excluded=absolute)


def let_back(store: Store, collection: CollectionInfo, paths: Sequence[Path | str]) -> list[str]:
    """Lift the exclusions of ``paths`` and of anything under them; returns those lifted."""
    wanted = [os.path.abspath(path) for path in paths]
    lifted = [path for path in exclusions(store, collection) if any(is_under(path, w) for w in wanted)]
    if not lifted:
        given = ", ".join(map(str, paths))
        raise NotFoundError(f"{given} is not kept out of collection {collection.name!r}")
    store.remove_folders(collection.id, FOLDER_EXCLUDED, lifted)
    return lifted
