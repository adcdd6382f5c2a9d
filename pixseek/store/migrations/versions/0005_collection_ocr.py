"""collections.ocr_engine / ocr_languages and images.ocr: OCR at index time, per collection

Revision ID: 0005
Revises: 0004

A collection records whether its images are read by OCR, with which engine and languages, the way
it records its model: every later `index`, `watch` and server indexing job follows the record
without being told again. Each image row records which engine and languages read it (NULL: not
read), so that turning OCR on for a collection, or changing its languages, reads exactly the images
not yet read that way, and an interrupted run resumes where it stopped. Existing rows stay NULL:
nothing is read until a user asks for OCR.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("collections", sa.Column("ocr_engine", sa.String(16), nullable=True))
    op.add_column("collections", sa.Column("ocr_languages", sa.String(200), nullable=True))
    op.add_column("images", sa.Column("ocr", sa.String(220), nullable=True))


def downgrade() -> None:
    # In place (SQLite 3.35+ and PostgreSQL): a batch copy would drop tables other tables reference.
    op.drop_column("images", "ocr")
    op.drop_column("collections", "ocr_languages")
    op.drop_column("collections", "ocr_engine")
