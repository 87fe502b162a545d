"""Multipart resume: the upload id, part size and source mtime, and the finished parts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("uploads") as batch:
        batch.add_column(sa.Column("multipart_upload_id", sa.Text, nullable=True))
        batch.add_column(sa.Column("part_size", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("source_mtime_ns", sa.BigInteger, nullable=True))
    op.create_table(
        "upload_parts",
        sa.Column("upload_id", sa.Integer, nullable=False),
        sa.Column("part_number", sa.Integer, nullable=False),
        sa.Column("etag", sa.String(128), nullable=False),
        sa.Column("checksum", sa.String(128), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("upload_id", "part_number", name="pk_upload_parts"),
        sa.ForeignKeyConstraint(
            ["upload_id"],
            ["uploads.id"],
            name="fk_upload_parts_upload_id_uploads",
            ondelete="CASCADE",
        ),
    )


def downgrade() -> None:
    op.drop_table("upload_parts")
    with op.batch_alter_table("uploads") as batch:
        batch.drop_column("source_mtime_ns")
        batch.drop_column("part_size")
        batch.drop_column("multipart_upload_id")
