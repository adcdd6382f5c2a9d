"""SQL schema: the store is the source of truth; the FAISS index is derived from it.

Every indexed image keeps its embedding here (float32 bytes), so a lost or stale vector index is
rebuilt without running the model, and a move or copy of a file reuses the stored vector.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

STATUS_INDEXED = "indexed"
STATUS_FAILED = "failed"
# Kinds of CollectionFolder: where the collection was indexed from, and what `pixseek rm` keeps out.
FOLDER_ROOT = "root"
FOLDER_EXCLUDED = "excluded"
COLLECTION_READY = "ready"
COLLECTION_BUILDING = "building"


class Base(DeclarativeBase):
    pass


class Collection(Base):
    """A set of images embedded by one model; the model identity guards against mixing vectors."""

    __tablename__ = "collections"
    __table_args__ = (
        Index(
            "uq_collections_one_active",
            "active",
            unique=True,
            sqlite_where=text("active"),
            postgresql_where=text("active"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    model_id: Mapped[str] = mapped_column(Text)
    model_fingerprint: Mapped[str] = mapped_column(String(64))
    dim: Mapped[int] = mapped_column(Integer)
    precision: Mapped[str] = mapped_column(String(8))
    # Bumped in the same transaction as every change to the set of vectors; the saved FAISS index
    # records the generation it reflects, so a matching pair skips reconciliation on open.
    generation: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    # OCR at index time (revision 0005): the engine and comma-separated languages every indexing
    # run of this collection reads images with; NULL: no OCR.
    ocr_engine: Mapped[str | None] = mapped_column(String(16))
    ocr_languages: Mapped[str | None] = mapped_column(String(200))
    # Revision 0006: 'building' until its first full run finishes, then 'ready'; at most one
    # collection is active (the one used when none is named), enforced by a partial unique index.
    # Server-side defaults only: an insert that names no state (an older revision's code, a test
    # writing the table of its time) gets them from the database.
    state: Mapped[str] = mapped_column(String(16), server_default=COLLECTION_READY)
    active: Mapped[bool] = mapped_column(Boolean, server_default=false())


class ImageRecord(Base):
    __tablename__ = "images"
    __table_args__ = (
        UniqueConstraint("collection_id", "path", name="uq_images_collection_path"),
        Index("ix_images_collection_hash", "collection_id", "content_hash"),
        Index("ix_images_collection_status", "collection_id", "status"),
        # Never reuse a deleted row id: ids are FAISS ids, and reconciliation compares id sets.
        {"sqlite_autoincrement": True},
    )

    # The row id is the FAISS id: stable across moves and renames.
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    content_hash: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    format: Mapped[str | None] = mapped_column(String(16))
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    taken_at: Mapped[datetime | None] = mapped_column(DateTime, index=True)
    camera: Mapped[str | None] = mapped_column(Text)
    orientation: Mapped[int | None] = mapped_column(Integer)
    gps_lat: Mapped[float | None] = mapped_column(Float)
    gps_lon: Mapped[float | None] = mapped_column(Float)
    # pHash of the decoded, upright pixels as a signed 64-bit integer (pixseek.media.perceptual):
    # duplicate finding's second check. NULL for rows indexed before revision 0003, until
    # `pixseek duplicates` needs it and computes it.
    perceptual_hash: Mapped[int | None] = mapped_column(BigInteger)
    # Which OCR read this picture ("engine:languages", pixseek.store.records.ocr_signature); NULL:
    # none did. A run with OCR on reads exactly the rows whose value differs from the collection's.
    ocr: Mapped[str | None] = mapped_column(String(220))
    indexed_at: Mapped[datetime] = mapped_column(DateTime)
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)


class CollectionFolder(Base):
    """A path the user named for a collection: a root it was indexed from (``serve`` serves those by
    default), or a file or folder ``pixseek rm`` removed, which every later index run, watcher and
    server keeps out until ``pixseek rm --undo`` lets it back in."""

    __tablename__ = "collection_folders"
    __table_args__ = (UniqueConstraint("collection_id", "kind", "path", name="uq_collection_folders"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class ImageText(Base):
    """A searchable text of an image: its OCR text (with each word's box as JSON), its file name and
    folder words, or an EXIF/XMP description, title or keywords. ``terms`` is the text as the
    keyword index sees it (pixseek.store.keyword_terms); revision 0004 indexes it with SQLite FTS5
    (the virtual table ``image_texts_fts``, kept in step by triggers) or a generated PostgreSQL
    ``tsvector`` column with a GIN index. Rows go with their image (ON DELETE CASCADE). Only
    indexed images have rows, and each row names its collection, so that a search without filters
    never joins the images table (a hash join over every image of the collection, measured)."""

    __tablename__ = "image_texts"
    __table_args__ = (
        Index("ix_image_texts_image_source", "image_id", "source"),
        # has_keyword_text runs before every search whose mode is not given: one index probe
        Index("ix_image_texts_collection_source", "collection_id", "source"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    image_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), ForeignKey("images.id", ondelete="CASCADE")
    )
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    terms: Mapped[str] = mapped_column(Text)
    boxes: Mapped[str | None] = mapped_column(Text)  # JSON [{"text", "box", "confidence"}], OCR only
    confidence: Mapped[float | None] = mapped_column(Float)


class VectorChange(Base):
    """One change to a collection's set of vectors (revision 0007), written by ``Store.apply`` in
    the transaction that bumps the collection's generation: the other server processes of
    ``pixseek serve --workers N`` read the changes since the generation they hold instead of
    comparing id sets (pixseek.store.change_log). Trimmed by age; a reader whose generation is no
    longer covered compares id sets once."""

    __tablename__ = "vector_changes"
    __table_args__ = (Index("ix_vector_changes_collection_generation", "collection_id", "generation"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    generation: Mapped[int] = mapped_column(BigInteger)
    image_id: Mapped[int] = mapped_column(BigInteger)
    added: Mapped[bool] = mapped_column(Boolean)  # False: removed
    created_at: Mapped[datetime] = mapped_column(DateTime, index=True)
