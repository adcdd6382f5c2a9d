"""All SQL the engine runs, behind one class, so the indexer and search never build queries.

Writes are applied as one transaction per batch (:meth:`Store.apply`): an interrupted run loses
at most the batch in flight, and the collection's generation moves with the vectors it describes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import Engine, delete, func, or_, select, update
from sqlalchemy.orm import defer

from pixseek.errors import NotFoundError, PixseekError
from pixseek.store.change_log import ChangeLog, log_changes
from pixseek.store.collection_states import CollectionStates
from pixseek.store.database import DatabaseUnavailable, open_database
from pixseek.store.duplicate_queries import DuplicateQueries
from pixseek.store.keyword_queries import KeywordQueries, path_rows, text_rows, write_texts
from pixseek.store.models import (
    STATUS_FAILED,
    STATUS_INDEXED,
    Collection,
    CollectionFolder,
    ImageRecord,
    ImageText,
)
from pixseek.store.ocr_queries import OcrQueries
from pixseek.store.query_parts import (
    FOLDER_CHUNK,
    ID_CHUNK,
    filter_conditions,
    folder_chunks,
    id_chunks,
    path_under,
)
from pixseek.store.records import (
    PATH_SOURCES,
    AppliedChanges,
    ChangeBatch,
    CollectionInfo,
    CollectionStats,
    FileFacts,
    KnownFile,
    SearchFilters,
)
from pixseek.store.sessions import Sessions
from pixseek.vocabulary import SortOrder


class CollectionMismatchError(PixseekError):
    """The collection holds vectors of another model: mixing them would make search meaningless."""


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _vector_bytes(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def _columns(facts: FileFacts) -> dict[str, object]:
    """The image row's columns among ``facts`` (its texts go to image_texts)."""
    values = vars(facts).copy()
    del values["texts"]
    return values


def _info(row: Collection) -> CollectionInfo:
    return CollectionInfo(
        row.id,
        row.name,
        row.model_id,
        row.model_fingerprint,
        row.dim,
        row.precision,
        row.generation,
        ocr_engine=row.ocr_engine,
        ocr_languages=tuple(row.ocr_languages.split(",")) if row.ocr_languages else (),
        state=row.state,
        active=row.active,
    )


class Store(DuplicateQueries, KeywordQueries, OcrQueries, CollectionStates, ChangeLog):
    def __init__(self, engine: Engine):
        self.engine = engine
        self._session = Sessions(engine)

    @classmethod
    def open(cls, url: str) -> Store:
        return cls(open_database(url))

    def close(self) -> None:
        self.engine.dispose()

    def ping(self) -> bool:
        """Whether the database answers now: a cheap ``SELECT 1`` that a watcher repeats during an
        outage, to retry its work as soon as the database is back rather than after a long back-off."""
        try:
            with self._session() as session:
                session.execute(select(1))
        except DatabaseUnavailable:
            return False
        return True

    # ---- collections -------------------------------------------------------------------------
    def collection(self, name: str) -> CollectionInfo | None:
        with self._session() as session:
            row = session.scalar(select(Collection).where(Collection.name == name))
            return _info(row) if row else None

    def collections(self) -> list[CollectionInfo]:
        with self._session() as session:
            return [_info(row) for row in session.scalars(select(Collection).order_by(Collection.name))]

    def ensure_collection(
        self, name: str, *, model_id: str, fingerprint: str, dim: int, precision: str, state: str = "ready"
    ) -> CollectionInfo:
        """Open ``name`` for this model, creating it on first use (in ``state``: 'building' for one
        built beside the active collection); refuse another model's collection."""
        with self._session.begin() as session:
            row = session.scalar(select(Collection).where(Collection.name == name))
            if row is None:
                row = Collection(
                    name=name,
                    model_id=model_id,
                    model_fingerprint=fingerprint,
                    dim=dim,
                    precision=precision,
                    generation=0,
                    created_at=_now(),
                    state=state,
                )
                session.add(row)
                session.flush()
            elif row.model_fingerprint != fingerprint or row.dim != dim:
                raise CollectionMismatchError(
                    f"collection {name!r} was built with model {row.model_id} (fingerprint "
                    f"{row.model_fingerprint}, {row.dim}-d); you asked for {model_id} (fingerprint "
                    f"{fingerprint}, {dim}-d). Vectors of different models cannot be mixed: use "
                    f"--collection NEW_NAME for this model, or `pixseek drop {name}` first"
                )
            return _info(row)

    def drop_collection(self, name: str) -> bool:
        with self._session.begin() as session:
            row = session.scalar(select(Collection).where(Collection.name == name))
            if row is None:
                return False
            session.execute(delete(ImageRecord).where(ImageRecord.collection_id == row.id))
            session.execute(delete(CollectionFolder).where(CollectionFolder.collection_id == row.id))
            session.delete(row)
            return True

    # ---- the paths a collection was indexed from, and those `rm` keeps out ------------------------
    def folders(self, collection_id: int, kind: str) -> list[str]:
        """Recorded paths of ``kind`` (FOLDER_ROOT or FOLDER_EXCLUDED), sorted."""
        with self._session() as session:
            return list(
                session.scalars(
                    select(CollectionFolder.path)
                    .where(CollectionFolder.collection_id == collection_id, CollectionFolder.kind == kind)
                    .order_by(CollectionFolder.path)
                )
            )

    def add_folders(self, collection_id: int, kind: str, paths: Iterable[str]) -> None:
        """Record ``paths`` as ``kind``; paths already recorded stay as they are."""
        with self._session.begin() as session:
            present = set(
                session.scalars(
                    select(CollectionFolder.path).where(
                        CollectionFolder.collection_id == collection_id, CollectionFolder.kind == kind
                    )
                )
            )
            now = _now()
            session.add_all(
                CollectionFolder(collection_id=collection_id, kind=kind, path=path, created_at=now)
                for path in dict.fromkeys(paths)
                if path not in present
            )

    def remove_folders(self, collection_id: int, kind: str, paths: Iterable[str]) -> None:
        """Forget the recorded ``paths`` of ``kind`` (exact matches)."""
        paths = list(paths)
        if not paths:
            return
        with self._session.begin() as session:
            session.execute(
                delete(CollectionFolder).where(
                    CollectionFolder.collection_id == collection_id,
                    CollectionFolder.kind == kind,
                    CollectionFolder.path.in_(paths),
                )
            )

    # ---- what the indexer needs --------------------------------------------------------------
    def known_files(self, collection_id: int, roots: Iterable[str]) -> dict[str, KnownFile]:
        columns = (
            ImageRecord.path,
            ImageRecord.id,
            ImageRecord.size,
            ImageRecord.mtime_ns,
            ImageRecord.content_hash,
            ImageRecord.status,
            ImageRecord.ocr,
        )
        found: dict[str, KnownFile] = {}
        with self._session() as session:
            for chunk in folder_chunks(roots):
                query = select(*columns).where(
                    ImageRecord.collection_id == collection_id,
                    or_(*(path_under(ImageRecord.path, root) for root in chunk)),
                )
                found.update((row[0], KnownFile(*row[1:])) for row in session.execute(query))
        return found

    def known_paths(
        self, collection_id: int, files: Iterable[str], folders: Iterable[str] = ()
    ) -> dict[str, KnownFile]:
        """Rows at exactly ``files`` and anywhere under ``folders``. A watcher asks about a few
        changed files at a time: exact paths hit the (collection, path) index, where a prefix match
        per file (:meth:`known_files`) would scan the whole collection."""
        columns = (
            ImageRecord.path,
            ImageRecord.id,
            ImageRecord.size,
            ImageRecord.mtime_ns,
            ImageRecord.content_hash,
            ImageRecord.status,
            ImageRecord.ocr,
        )
        found: dict[str, KnownFile] = {}
        unique = list(dict.fromkeys(files))
        with self._session() as session:
            for start in range(0, len(unique), ID_CHUNK):
                query = select(*columns).where(
                    ImageRecord.collection_id == collection_id,
                    ImageRecord.path.in_(unique[start : start + ID_CHUNK]),
                )
                found.update((row[0], KnownFile(*row[1:])) for row in session.execute(query))
        folders = list(folders)
        if folders:
            found.update(self.known_files(collection_id, folders))
        return found

    def indexed_by_hash(self, collection_id: int, hashes: Iterable[str]) -> dict[str, list[tuple[int, str]]]:
        found: dict[str, list[tuple[int, str]]] = {}
        unique = list(dict.fromkeys(hashes))
        with self._session() as session:
            for start in range(0, len(unique), ID_CHUNK):
                query = select(ImageRecord.content_hash, ImageRecord.id, ImageRecord.path).where(
                    ImageRecord.collection_id == collection_id,
                    ImageRecord.status == STATUS_INDEXED,
                    ImageRecord.content_hash.in_(unique[start : start + ID_CHUNK]),
                )
                for content_hash, image_id, path in session.execute(query):
                    if content_hash is not None:  # it is: the query asked for these hashes
                        found.setdefault(content_hash, []).append((image_id, path))
        return found

    def embeddings(self, ids: Sequence[int], dim: int) -> tuple[np.ndarray, np.ndarray]:
        """Stored vectors for ``ids`` (those still indexed), as (ids, float32 matrix)."""
        out_ids: list[int] = []
        blobs: list[bytes] = []
        with self._session() as session:
            for chunk in id_chunks(ids):
                query = select(ImageRecord.id, ImageRecord.embedding).where(
                    ImageRecord.id.in_(chunk), ImageRecord.status == STATUS_INDEXED
                )
                for image_id, blob in session.execute(query):
                    if blob is not None:  # every indexed row has its embedding
                        out_ids.append(image_id)
                        blobs.append(blob)
        return _as_matrix(out_ids, blobs, dim)

    def iter_embeddings(
        self, collection_id: int, dim: int, chunk: int = 10_000
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        last_id = 0
        with self._session() as session:
            while True:
                rows = session.execute(
                    select(ImageRecord.id, ImageRecord.embedding)
                    .where(
                        ImageRecord.collection_id == collection_id,
                        ImageRecord.status == STATUS_INDEXED,
                        ImageRecord.id > last_id,
                    )
                    .order_by(ImageRecord.id)
                    .limit(chunk)
                ).all()
                if not rows:
                    return
                last_id = rows[-1][0]
                yield _as_matrix([r[0] for r in rows], [r[1] or b"" for r in rows], dim)

    def indexed_ids(self, collection_id: int) -> np.ndarray:
        with self._session() as session:
            ids = session.scalars(
                select(ImageRecord.id).where(
                    ImageRecord.collection_id == collection_id, ImageRecord.status == STATUS_INDEXED
                )
            ).all()
        return np.asarray(ids, dtype=np.int64)

    def apply(self, collection_id: int, batch: ChangeBatch) -> AppliedChanges:
        """Apply one batch in a single transaction and report the vector changes FAISS must mirror.

        The keyword index moves with it: new rows get their path words and texts, moved rows new
        path words (their OCR and EXIF text stays), deleted rows lose theirs by ON DELETE CASCADE."""
        now = _now()
        removed: list[int] = []
        with self._session.begin() as session:
            for chunk in id_chunks(batch.deleted):
                removed.extend(
                    session.scalars(
                        delete(ImageRecord)
                        .where(ImageRecord.id.in_(chunk), ImageRecord.status == STATUS_INDEXED)
                        .returning(ImageRecord.id)
                    ).all()
                )
                session.execute(delete(ImageRecord).where(ImageRecord.id.in_(chunk)))
            for image_id, facts in batch.moved:
                session.execute(
                    update(ImageRecord)
                    .where(ImageRecord.id == image_id)
                    .values(path=facts.path, size=facts.size, mtime_ns=facts.mtime_ns, indexed_at=now)
                )
            for chunk in id_chunks([image_id for image_id, _ in batch.moved]):
                session.execute(
                    delete(ImageText).where(ImageText.image_id.in_(chunk), ImageText.source.in_(PATH_SOURCES))
                )
            write_texts(
                session,
                [
                    row
                    for image_id, facts in batch.moved
                    for row in path_rows(image_id, collection_id, facts.path)
                ],
            )
            added = [
                ImageRecord(
                    collection_id=collection_id,
                    status=STATUS_INDEXED,
                    indexed_at=now,
                    embedding=_vector_bytes(vector),
                    **_columns(facts),
                )
                for facts, vector in batch.indexed
            ]
            failed = [
                ImageRecord(
                    collection_id=collection_id,
                    status=STATUS_FAILED,
                    error=reason,
                    indexed_at=now,
                    **_columns(facts),
                )
                for facts, reason in batch.failed
            ]
            session.add_all(added + failed)
            session.flush()
            write_texts(
                session,
                [
                    row
                    for record, (facts, _) in zip(added, batch.indexed, strict=True)
                    for row in path_rows(record.id, collection_id, facts.path)
                    + text_rows(
                        record.id, collection_id, [t for t in facts.texts if t.source not in PATH_SOURCES]
                    )
                ],
            )
            collection = session.get(Collection, collection_id)
            if collection is None:  # dropped by another process while this batch was prepared
                raise NotFoundError(f"collection {collection_id} was dropped during indexing")
            if added or removed:
                collection.generation += 1
                # the same transaction: a reader that sees the generation sees its changes
                log_changes(session, collection_id, collection.generation, [r.id for r in added], removed)
            generation, dim = collection.generation, collection.dim
        vectors = [vector for _, vector in batch.indexed]
        return AppliedChanges(
            added_ids=np.asarray([row.id for row in added], dtype=np.int64),
            added_vectors=np.asarray(vectors, dtype=np.float32).reshape(len(vectors), dim),
            removed_ids=np.asarray(removed, dtype=np.int64),
            generation=generation,
        )

    # ---- what search and status need --------------------------------------------------------
    def images(self, ids: Sequence[int]) -> dict[int, ImageRecord]:
        """Metadata rows (without the embedding blob) for result ids."""
        found: dict[int, ImageRecord] = {}
        with self._session() as session:
            for chunk in id_chunks(ids):
                query = (
                    select(ImageRecord).options(defer(ImageRecord.embedding)).where(ImageRecord.id.in_(chunk))
                )
                found.update((row.id, row) for row in session.scalars(query))
        return found

    def image_by_path(self, collection_id: int, path: str) -> ImageRecord | None:
        with self._session() as session:
            return session.scalar(
                select(ImageRecord)
                .options(defer(ImageRecord.embedding))
                .where(ImageRecord.collection_id == collection_id, ImageRecord.path == path)
            )

    def sort_keys(self, ids: Sequence[int]) -> dict[int, tuple[datetime | None, str]]:
        """(taken_at, path) of each of ``ids`` still present: what ordering a search's matches by
        date or path needs, without loading whole rows."""
        found: dict[int, tuple[datetime | None, str]] = {}
        with self._session() as session:
            for chunk in id_chunks(ids):
                query = select(ImageRecord.id, ImageRecord.taken_at, ImageRecord.path).where(
                    ImageRecord.id.in_(chunk)
                )
                found.update((image_id, (taken, path)) for image_id, taken, path in session.execute(query))
        return found

    def ordered_ids(
        self,
        collection_id: int,
        filters: SearchFilters | None,
        order: SortOrder,
        limit: int,
        excluded: Iterable[int] = (),
    ) -> tuple[list[int], int] | None:
        """The first ``limit`` indexed images passing ``filters`` in ``order`` (by the date taken,
        undated last, or by path; ties by path), and how many pass in all; None when the filters
        name more folders than one query takes (the caller then orders in Python). What browsing a
        collection by date costs: one sorted query, no vector search."""
        filters = filters or SearchFilters()
        if len(set(filters.folders)) > FOLDER_CHUNK:
            return None
        conditions = filter_conditions(collection_id, filters)
        if filters.folders:
            conditions.append(or_(*(path_under(ImageRecord.path, folder) for folder in set(filters.folders))))
        skip = list(excluded)
        if skip:
            conditions.append(ImageRecord.id.not_in(skip))
        ordering: list[Any] = [ImageRecord.path]
        if order != SortOrder.PATH:
            taken = ImageRecord.taken_at.desc() if order == SortOrder.NEWEST else ImageRecord.taken_at.asc()
            ordering = [ImageRecord.taken_at.is_(None), taken, ImageRecord.path]
        page = select(ImageRecord.id).where(*conditions).order_by(*ordering).limit(limit)
        with self._session() as session:
            ids = session.scalars(page).all()
            total = session.scalar(select(func.count()).select_from(ImageRecord).where(*conditions)) or 0
        return list(ids), total

    def filtered_ids(self, collection_id: int, filters: SearchFilters) -> np.ndarray:
        """Ids of the indexed images that pass ``filters``; many folders take one query per chunk."""
        conditions = filter_conditions(collection_id, filters)
        with self._session() as session:
            if not filters.folders:
                ids = session.scalars(select(ImageRecord.id).where(*conditions)).all()
                return np.asarray(ids, dtype=np.int64)
            found: set[int] = set()
            for chunk in folder_chunks(filters.folders):
                under = or_(*(path_under(ImageRecord.path, folder) for folder in chunk))
                found.update(session.scalars(select(ImageRecord.id).where(*conditions, under)))
        return np.asarray(sorted(found), dtype=np.int64)

    def stats(self, collection_id: int) -> CollectionStats:
        with self._session() as session:
            counts = dict(
                session.execute(
                    select(ImageRecord.status, func.count())
                    .where(ImageRecord.collection_id == collection_id)
                    .group_by(ImageRecord.status)
                ).all()
            )
            first, last = session.execute(
                select(func.min(ImageRecord.indexed_at), func.max(ImageRecord.indexed_at)).where(
                    ImageRecord.collection_id == collection_id
                )
            ).one()
        return CollectionStats(counts.get(STATUS_INDEXED, 0), counts.get(STATUS_FAILED, 0), first, last)

    def failures(self, collection_id: int, limit: int = 20) -> list[tuple[str, str]]:
        with self._session() as session:
            return [
                (path, error or "")
                for path, error in session.execute(
                    select(ImageRecord.path, ImageRecord.error)
                    .where(ImageRecord.collection_id == collection_id, ImageRecord.status == STATUS_FAILED)
                    .order_by(ImageRecord.path)
                    .limit(limit)
                )
            ]


def _as_matrix(ids: list[int], blobs: list[bytes], dim: int) -> tuple[np.ndarray, np.ndarray]:
    matrix = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), dim).astype(np.float32)
    return np.asarray(ids, dtype=np.int64), matrix
