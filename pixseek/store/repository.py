"""All SQL the engine runs, behind one class, so the indexer and search never build queries.

Writes are applied as one transaction per batch (:meth:`Store.apply`): an interrupted run loses
at most the batch in flight, and the collection's generation moves with the vectors it describes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
from sqlalchemy import Engine, delete, func, or_, select, update
from sqlalchemy.orm import defer, sessionmaker

from pixseek.errors import PixseekError
from pixseek.store.database import open_database
from pixseek.store.models import STATUS_FAILED, STATUS_INDEXED, Collection, ImageRecord

_ID_CHUNK = 900  # below SQLite's default bound-parameter limit


class CollectionMismatchError(PixseekError):
    """The collection holds vectors of another model: mixing them would make search meaningless."""


@dataclass(frozen=True)
class CollectionInfo:
    id: int
    name: str
    model_id: str
    model_fingerprint: str
    dim: int
    precision: str
    generation: int


@dataclass(frozen=True)
class KnownFile:
    id: int
    size: int
    mtime_ns: int
    content_hash: str | None
    status: str


@dataclass(frozen=True)
class FileFacts:
    """What the indexer learned about one file on disk, whatever the outcome."""

    path: str
    size: int
    mtime_ns: int
    content_hash: str | None = None
    format: str | None = None
    width: int | None = None
    height: int | None = None
    taken_at: datetime | None = None
    camera: str | None = None
    orientation: int | None = None
    gps_lat: float | None = None
    gps_lon: float | None = None


@dataclass
class ChangeBatch:
    """One transaction's worth of index changes, applied in a safe order: deletes, moves, inserts."""

    indexed: list[tuple[FileFacts, np.ndarray]] = field(default_factory=list)
    failed: list[tuple[FileFacts, str]] = field(default_factory=list)
    moved: list[tuple[int, FileFacts]] = field(default_factory=list)
    deleted: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.indexed or self.failed or self.moved or self.deleted)


@dataclass(frozen=True)
class AppliedChanges:
    added_ids: np.ndarray
    added_vectors: np.ndarray
    removed_ids: np.ndarray
    generation: int


@dataclass(frozen=True)
class SearchFilters:
    folders: tuple[str, ...] = ()
    taken_after: datetime | None = None
    taken_before: datetime | None = None
    min_width: int | None = None
    min_height: int | None = None
    formats: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(
            self.folders
            or self.taken_after
            or self.taken_before
            or self.min_width
            or self.min_height
            or self.formats
        )


@dataclass(frozen=True)
class CollectionStats:
    indexed: int
    failed: int
    first_indexed: datetime | None
    last_indexed: datetime | None


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _under(path_column, folder: str):
    """Rows at ``folder`` itself or anywhere below it (not siblings sharing a name prefix)."""
    folder = folder.rstrip(os.sep) or os.sep
    prefix = folder if folder.endswith(os.sep) else folder + os.sep
    return or_(path_column == folder, path_column.like(_escape_like(prefix) + "%", escape="\\"))


def _chunks(values: Sequence[int]) -> Iterator[list[int]]:
    values = list(values)
    for start in range(0, len(values), _ID_CHUNK):
        yield values[start : start + _ID_CHUNK]


def _vector_bytes(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def _info(row: Collection) -> CollectionInfo:
    return CollectionInfo(
        row.id, row.name, row.model_id, row.model_fingerprint, row.dim, row.precision, row.generation
    )


class Store:
    def __init__(self, engine: Engine):
        self.engine = engine
        self._session = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: str) -> Store:
        return cls(open_database(url))

    def close(self) -> None:
        self.engine.dispose()

    # ---- collections -------------------------------------------------------------------------
    def collection(self, name: str) -> CollectionInfo | None:
        with self._session() as session:
            row = session.scalar(select(Collection).where(Collection.name == name))
            return _info(row) if row else None

    def collections(self) -> list[CollectionInfo]:
        with self._session() as session:
            return [_info(row) for row in session.scalars(select(Collection).order_by(Collection.name))]

    def ensure_collection(
        self, name: str, *, model_id: str, fingerprint: str, dim: int, precision: str
    ) -> CollectionInfo:
        """Open ``name`` for this model, creating it on first use; refuse another model's collection."""
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
            session.delete(row)
            return True

    # ---- what the indexer needs --------------------------------------------------------------
    def known_files(self, collection_id: int, roots: Iterable[str]) -> dict[str, KnownFile]:
        query = select(
            ImageRecord.path,
            ImageRecord.id,
            ImageRecord.size,
            ImageRecord.mtime_ns,
            ImageRecord.content_hash,
            ImageRecord.status,
        ).where(
            ImageRecord.collection_id == collection_id,
            or_(*(_under(ImageRecord.path, root) for root in roots)),
        )
        with self._session() as session:
            return {row[0]: KnownFile(*row[1:]) for row in session.execute(query)}

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
        )
        found: dict[str, KnownFile] = {}
        unique = list(dict.fromkeys(files))
        with self._session() as session:
            for start in range(0, len(unique), _ID_CHUNK):
                query = select(*columns).where(
                    ImageRecord.collection_id == collection_id,
                    ImageRecord.path.in_(unique[start : start + _ID_CHUNK]),
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
            for start in range(0, len(unique), _ID_CHUNK):
                query = select(ImageRecord.content_hash, ImageRecord.id, ImageRecord.path).where(
                    ImageRecord.collection_id == collection_id,
                    ImageRecord.status == STATUS_INDEXED,
                    ImageRecord.content_hash.in_(unique[start : start + _ID_CHUNK]),
                )
                for content_hash, image_id, path in session.execute(query):
                    found.setdefault(content_hash, []).append((image_id, path))
        return found

    def embeddings(self, ids: Sequence[int], dim: int) -> tuple[np.ndarray, np.ndarray]:
        """Stored vectors for ``ids`` (those still indexed), as (ids, float32 matrix)."""
        out_ids: list[int] = []
        blobs: list[bytes] = []
        with self._session() as session:
            for chunk in _chunks(ids):
                query = select(ImageRecord.id, ImageRecord.embedding).where(
                    ImageRecord.id.in_(chunk), ImageRecord.status == STATUS_INDEXED
                )
                for image_id, blob in session.execute(query):
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
                yield _as_matrix([r[0] for r in rows], [r[1] for r in rows], dim)

    def indexed_ids(self, collection_id: int) -> np.ndarray:
        with self._session() as session:
            ids = session.scalars(
                select(ImageRecord.id).where(
                    ImageRecord.collection_id == collection_id, ImageRecord.status == STATUS_INDEXED
                )
            ).all()
        return np.asarray(ids, dtype=np.int64)

    def apply(self, collection_id: int, batch: ChangeBatch) -> AppliedChanges:
        """Apply one batch in a single transaction and report the vector changes FAISS must mirror."""
        now = _now()
        removed: list[int] = []
        with self._session.begin() as session:
            for chunk in _chunks(batch.deleted):
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
            added = [
                ImageRecord(
                    collection_id=collection_id,
                    status=STATUS_INDEXED,
                    indexed_at=now,
                    embedding=_vector_bytes(vector),
                    **vars(facts),
                )
                for facts, vector in batch.indexed
            ]
            failed = [
                ImageRecord(
                    collection_id=collection_id,
                    status=STATUS_FAILED,
                    error=reason,
                    indexed_at=now,
                    **vars(facts),
                )
                for facts, reason in batch.failed
            ]
            session.add_all(added + failed)
            session.flush()
            collection = session.get(Collection, collection_id)
            if added or removed:
                collection.generation += 1
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
            for chunk in _chunks(ids):
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

    def filtered_ids(self, collection_id: int, filters: SearchFilters) -> np.ndarray:
        conditions = [ImageRecord.collection_id == collection_id, ImageRecord.status == STATUS_INDEXED]
        if filters.folders:
            conditions.append(or_(*(_under(ImageRecord.path, folder) for folder in filters.folders)))
        if filters.taken_after:
            conditions.append(ImageRecord.taken_at >= filters.taken_after)
        if filters.taken_before:
            conditions.append(ImageRecord.taken_at <= filters.taken_before)
        if filters.min_width:
            conditions.append(ImageRecord.width >= filters.min_width)
        if filters.min_height:
            conditions.append(ImageRecord.height >= filters.min_height)
        if filters.formats:
            conditions.append(func.upper(ImageRecord.format).in_([f.upper() for f in filters.formats]))
        with self._session() as session:
            ids = session.scalars(select(ImageRecord.id).where(*conditions)).all()
        return np.asarray(ids, dtype=np.int64)

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
