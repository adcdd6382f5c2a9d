"""image_texts and its full-text index: keyword search over OCR text, path words and EXIF/XMP text

Revision ID: 0004
Revises: 0003

One row per (image, source): source is ocr, filename, path, description, title or keywords. ``terms``
holds the words as pixseek's tokeniser writes them (case folded, accents removed, CJK split per
character: pixseek.store.keyword_terms), so that both backends index exactly the same words:

- SQLite: an external-content FTS5 table over image_texts.terms (no second copy of the text),
  kept in step by triggers; tokenizer ``unicode61 remove_diacritics 2``, which also folds any
  accent the Python side did not.
- PostgreSQL: a generated ``tsvector`` column with the 'simple' configuration and a GIN index.
  'simple' lowercases and splits, nothing else: no stemming and no stop words, so that every
  language of a collection (OCR reads English, German, French and Chinese alike) tokenises the same
  way, an order number or a short word ("the", "die") stays findable, and no per-collection
  language has to be chosen. Stemming is what the semantic half of a hybrid search covers.

Rows indexed before 0004 get their file name and folder words here, in chunks, so that no
``reindex`` is needed; EXIF/XMP text arrives when a file is next indexed (reading it here would
read every file of the library inside a migration).
"""

import sqlalchemy as sa
from alembic import op

from pixseek.store.keyword_terms import path_texts

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_CHUNK = 5_000
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

_SQLITE_FTS = [
    "CREATE VIRTUAL TABLE image_texts_fts USING fts5("
    "terms, content='image_texts', content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER image_texts_ai AFTER INSERT ON image_texts BEGIN "
    "INSERT INTO image_texts_fts(rowid, terms) VALUES (new.id, new.terms); END",
    "CREATE TRIGGER image_texts_ad AFTER DELETE ON image_texts BEGIN "
    "INSERT INTO image_texts_fts(image_texts_fts, rowid, terms) VALUES ('delete', old.id, old.terms); END",
    "CREATE TRIGGER image_texts_au AFTER UPDATE ON image_texts BEGIN "
    "INSERT INTO image_texts_fts(image_texts_fts, rowid, terms) VALUES ('delete', old.id, old.terms); "
    "INSERT INTO image_texts_fts(rowid, terms) VALUES (new.id, new.terms); END",
]
_POSTGRES_FTS = [
    "ALTER TABLE image_texts ADD COLUMN tsv tsvector"
    " GENERATED ALWAYS AS (to_tsvector('simple', terms)) STORED",
    "CREATE INDEX ix_image_texts_tsv ON image_texts USING GIN (tsv)",
]


def upgrade() -> None:
    op.create_table(
        "image_texts",
        sa.Column("id", _ID, nullable=False),
        sa.Column("image_id", _ID, nullable=False),
        sa.Column("collection_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("terms", sa.Text(), nullable=False),
        sa.Column("boxes", sa.Text(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["collection_id"], ["collections.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_image_texts_image_source", "image_texts", ["image_id", "source"])
    op.create_index("ix_image_texts_collection_source", "image_texts", ["collection_id", "source"])
    bind = op.get_bind()
    for statement in _SQLITE_FTS if bind.dialect.name == "sqlite" else _POSTGRES_FTS:
        op.execute(statement)
    _backfill_path_words(bind)


def _backfill_path_words(bind: sa.Connection) -> None:
    """File name and folder words of every indexed row, a chunk of rows per query."""
    images = sa.table(
        "images", sa.column("id"), sa.column("collection_id"), sa.column("path"), sa.column("status")
    )
    texts = sa.table(
        "image_texts",
        sa.column("image_id"),
        sa.column("collection_id"),
        sa.column("source"),
        sa.column("text"),
        sa.column("terms"),
    )
    last_id = 0
    while True:
        rows = bind.execute(
            sa.select(images.c.id, images.c.collection_id, images.c.path)
            .where(images.c.status == "indexed", images.c.id > last_id)
            .order_by(images.c.id)
            .limit(_CHUNK)
        ).all()
        if not rows:
            return
        last_id = rows[-1][0]
        values = [
            {
                "image_id": image_id,
                "collection_id": collection,
                "source": source,
                "text": text,
                "terms": terms,
            }
            for image_id, collection, path in rows
            for source, text, terms in path_texts(path)
        ]
        if values:
            bind.execute(texts.insert(), values)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("image_texts_ai", "image_texts_ad", "image_texts_au"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS image_texts_fts")
    op.drop_index("ix_image_texts_collection_source", table_name="image_texts")
    op.drop_index("ix_image_texts_image_source", table_name="image_texts")
    op.drop_table("image_texts")
