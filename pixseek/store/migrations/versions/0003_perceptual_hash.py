"""images.perceptual_hash: a 64-bit pHash of each indexed picture, for duplicate finding

Revision ID: 0003
Revises: 0002

New rows get the hash from the indexer (computed on the decoded pixels it already holds). Rows
indexed before 0003 stay NULL: computing it here would read and decode every file of the library
inside a migration, so `pixseek duplicates` computes it on demand, only for the images of a
candidate group, and stores it.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("images", sa.Column("perceptual_hash", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("images") as batch:  # SQLite before 3.35 cannot drop a column in place
        batch.drop_column("perceptual_hash")
