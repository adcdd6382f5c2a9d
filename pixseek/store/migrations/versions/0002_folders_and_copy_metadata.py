"""collection folders (recorded roots, `rm` exclusions); metadata for copies that lost it

Revision ID: 0002
Revises: 0001

Before 0002, an image indexed as a copy of an already-indexed file (same content hash, vector
reused) was stored without its format, size in pixels, date, camera and position, so filtered
searches dropped it. Copies share their original's content, hence its metadata: the upgrade fills
the missing fields from an indexed row of the same collection with the same content hash.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_METADATA = ("format", "width", "height", "taken_at", "camera", "orientation", "gps_lat", "gps_lon")


def upgrade() -> None:
    op.create_table(
        "collection_folders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("collection_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["collection_id"], ["collections.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("collection_id", "kind", "path", name="uq_collection_folders"),
    )
    source = (
        "FROM images AS source WHERE source.collection_id = images.collection_id "
        "AND source.content_hash = images.content_hash AND source.format IS NOT NULL "
        "AND source.status = 'indexed'"
    )
    assignments = ", ".join(
        f"{column} = (SELECT source.{column} {source} ORDER BY source.id LIMIT 1)" for column in _METADATA
    )
    op.execute(
        f"UPDATE images SET {assignments} WHERE status = 'indexed' AND format IS NULL "
        f"AND content_hash IS NOT NULL AND EXISTS (SELECT 1 {source})"
    )


def downgrade() -> None:
    op.drop_table("collection_folders")
