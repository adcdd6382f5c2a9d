"""The change log of a collection's vectors: what the server processes that do not write follow.

``Store.apply`` records every vector added or removed with the generation it moved the collection
to, in the same transaction (:func:`log_changes`). A process that holds the index at generation
``g`` fetches the changes in ``(g, now]`` (:meth:`ChangeLog.changes_since`) and the embeddings of
the added ids: a few rows per change, where comparing id sets costs a scan of every id in SQL and
in the index. Every generation bump writes at least one entry, so the log
covers ``(g, now]`` exactly when it holds generation ``g + 1``; otherwise (trimmed, or written
before revision 0007) :meth:`changes_since` says so and the caller compares id sets once.

A part of :class:`pixseek.store.repository.Store` (a mixin it inherits).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from pixseek.store.models import Collection, VectorChange
from pixseek.store.sessions import Sessions

# How long entries are kept: a reader polls every fraction of a second, so this only matters to a
# process that stalled; past it, that process compares id sets instead.
KEEP_FOR = timedelta(minutes=10)


@dataclass(frozen=True)
class VectorChanges:
    """The net changes in ``(since, through]``: ids added (and not removed again), ids removed."""

    since: int
    through: int
    added: np.ndarray
    removed: np.ndarray


def log_changes(
    session: Session, collection_id: int, generation: int, added: Sequence[int], removed: Sequence[int]
) -> None:
    """Record one applied batch's vector changes (called inside ``Store.apply``'s transaction)."""
    now = datetime.now(UTC).replace(tzinfo=None)
    rows = [
        {
            "collection_id": collection_id,
            "generation": generation,
            "image_id": image_id,
            "added": flag,
            "created_at": now,
        }
        for ids, flag in ((added, True), (removed, False))
        for image_id in ids
    ]
    if rows:
        session.execute(insert(VectorChange), rows)


class ChangeLog:
    _session: Sessions

    def generation(self, collection_id: int) -> int | None:
        """The collection's generation now (None: it was dropped): what a reader polls."""
        with self._session() as session:
            return session.scalar(select(Collection.generation).where(Collection.id == collection_id))

    def changes_since(self, collection_id: int, since: int, through: int) -> VectorChanges | None:
        """The vector changes of generations ``(since, through]``, or None when the log does not
        cover them all (trimmed, or older than the log)."""
        with self._session() as session:
            rows = session.execute(
                select(VectorChange.generation, VectorChange.image_id, VectorChange.added)
                .where(
                    VectorChange.collection_id == collection_id,
                    VectorChange.generation > since,
                    VectorChange.generation <= through,
                )
                .order_by(VectorChange.generation, VectorChange.id)
            ).all()
        if through > since and (not rows or rows[0][0] != since + 1):
            return None
        added: dict[int, None] = {}
        removed: set[int] = set()
        for _generation, image_id, was_added in rows:
            if was_added:
                added[image_id] = None
            elif image_id in added:  # added and removed again within the range: net nothing
                del added[image_id]
            else:
                removed.add(image_id)
        return VectorChanges(
            since,
            through,
            np.fromiter(added, dtype=np.int64, count=len(added)),
            np.asarray(sorted(removed), dtype=np.int64),
        )

    def trim_change_log(self, keep_for: timedelta = KEEP_FOR) -> int:
        """Delete entries older than ``keep_for``; returns how many."""
        cutoff = datetime.now(UTC).replace(tzinfo=None) - keep_for
        with self._session.begin() as session:
            result = session.execute(delete(VectorChange).where(VectorChange.created_at < cutoff))
            return int(getattr(result, "rowcount", 0) or 0)
