"""The SQL of collections built beside the served one: their build state and which one is active.

A part of :class:`pixseek.store.repository.Store` (a mixin it inherits). Activation is one
transaction (clear the old flag, set the new one; a partial unique index allows one active row),
so every process that reads the flag sees the old collection or the new one, never none or two.
"""

from __future__ import annotations

from sqlalchemy import select, update

from pixseek.errors import ConflictError, NotFoundError
from pixseek.store.models import COLLECTION_READY, Collection
from pixseek.store.sessions import Sessions


class CollectionStates:
    _session: Sessions

    def active_collection_name(self) -> str | None:
        """The collection marked active (None: none is, and the configured default name applies)."""
        with self._session() as session:
            return session.scalar(select(Collection.name).where(Collection.active.is_(True)))

    def set_collection_state(self, collection_id: int, state: str) -> None:
        with self._session.begin() as session:
            session.execute(update(Collection).where(Collection.id == collection_id).values(state=state))

    def activate_collection(self, name: str) -> None:
        """Make ``name`` the active collection for every process, in one transaction."""
        with self._session.begin() as session:
            row = session.scalar(select(Collection).where(Collection.name == name).with_for_update())
            if row is None:
                raise NotFoundError(f"no collection {name!r}")
            if row.state != COLLECTION_READY:
                raise CollectionBusyError(
                    f"collection {name!r} is still {row.state}: activate it when its build has finished"
                )
            session.execute(update(Collection).where(Collection.active.is_(True)).values(active=False))
            session.flush()  # the old flag is cleared before the new one is set (one active row)
            row.active = True


class CollectionBusyError(ConflictError):
    """The collection is in a state that forbids the operation (building, or the active one)."""
