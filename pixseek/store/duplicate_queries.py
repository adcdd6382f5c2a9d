"""The SQL duplicate finding runs: exact copies by content hash, and the perceptual hashes.

A part of :class:`pixseek.store.repository.Store` (a mixin it inherits), kept in its own module so
that the queries of one feature sit together and the repository stays readable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import func, select, update

from pixseek.store.models import STATUS_INDEXED, ImageRecord
from pixseek.store.query_parts import ID_CHUNK, id_chunks
from pixseek.store.sessions import Sessions


class DuplicateQueries:
    _session: Sessions

    def content_groups(self, collection_id: int) -> list[list[int]]:
        """Ids of the indexed images that share their content hash with another, one list per hash
        (ids ascending, lists by their first id): one GROUP BY, however large the collection."""
        indexed = (ImageRecord.collection_id == collection_id, ImageRecord.status == STATUS_INDEXED)
        shared = (
            select(ImageRecord.content_hash)
            .where(*indexed, ImageRecord.content_hash.is_not(None))
            .group_by(ImageRecord.content_hash)
            .having(func.count() > 1)
        )
        groups: dict[str, list[int]] = {}
        with self._session() as session:
            rows = session.execute(
                select(ImageRecord.content_hash, ImageRecord.id)
                .where(*indexed, ImageRecord.content_hash.in_(shared))
                .order_by(ImageRecord.id)
            )
            for content_hash, image_id in rows:
                if content_hash is not None:  # it is: only shared hashes were asked for
                    groups.setdefault(content_hash, []).append(image_id)
        return sorted(groups.values())

    def perceptual_hashes(self, ids: Sequence[int]) -> dict[int, int | None]:
        """The stored perceptual hash of each of ``ids`` (None: not computed yet)."""
        found: dict[int, int | None] = {}
        with self._session() as session:
            for chunk in id_chunks(ids):
                query = select(ImageRecord.id, ImageRecord.perceptual_hash).where(ImageRecord.id.in_(chunk))
                found.update((image_id, value) for image_id, value in session.execute(query))
        return found

    def set_perceptual_hashes(self, hashes: Mapping[int, int]) -> None:
        """Store hashes computed after indexing (rows from before revision 0003), by id."""
        rows = [{"id": image_id, "perceptual_hash": value} for image_id, value in hashes.items()]
        for start in range(0, len(rows), ID_CHUNK):
            with self._session.begin() as session:
                session.execute(update(ImageRecord), rows[start : start + ID_CHUNK])
