"""collections.state and collections.active: collections built beside the one being served

Revision ID: 0006
Revises: 0005

A new collection (another model, or a fine-tuned checkpoint) is built while the active one keeps
answering: ``state`` is 'building' until its first full indexing run finishes, and only a 'ready'
collection can be activated. ``active`` marks the collection every command and every server
process uses when none is named; a partial unique index keeps at most one active, and activation
is one transaction, so every process sees either the old or the new one. Existing collections are
'ready'; none is marked active, which means the configured default name (``default``) as before.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("collections", sa.Column("state", sa.String(16), nullable=False, server_default="ready"))
    op.add_column("collections", sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_index(
        "uq_collections_one_active",
        "collections",
        ["active"],
        unique=True,
        sqlite_where=sa.text("active"),
        postgresql_where=sa.text("active"),
    )


def downgrade() -> None:
    op.drop_index("uq_collections_one_active", table_name="collections")
    # In place (SQLite 3.35+ and PostgreSQL): a batch copy of `collections` would drop the table
    # that `images` and `collection_folders` reference, which SQLite refuses mid-migration.
    op.drop_column("collections", "active")
    op.drop_column("collections", "state")
