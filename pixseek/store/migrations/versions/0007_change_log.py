"""vector_changes: the change log the server processes of `pixseek serve --workers N` follow

Revision ID: 0007
Revises: 0006

Every change to a collection's set of vectors (an image row added or removed with its embedding)
is recorded with the generation it bumped the collection to, in the same transaction. A server
process that does not write (a reader) fetches the changes past the generation it holds, and the
embeddings of the added ids, instead of comparing every id in SQL with every id in its index.
Entries are trimmed by age; nothing is backfilled: a reader holding a generation older than the
log compares id sets once, as a process that opens the index does.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vector_changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column(
            "collection_id",
            sa.Integer(),
            sa.ForeignKey("collections.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column("image_id", sa.BigInteger(), nullable=False),
        sa.Column("added", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index(
        "ix_vector_changes_collection_generation", "vector_changes", ["collection_id", "generation"]
    )
    op.create_index("ix_vector_changes_created_at", "vector_changes", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_vector_changes_created_at", table_name="vector_changes")
    op.drop_index("ix_vector_changes_collection_generation", table_name="vector_changes")
    op.drop_table("vector_changes")
