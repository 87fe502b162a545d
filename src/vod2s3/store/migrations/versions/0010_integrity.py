"""Integrity checks: an account's mode, and what each upload's record says was verified.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL: VOD2S3_INTEGRITY; else "auto", "crc32c", "md5" or "sha256" for this account.
    op.add_column("accounts", sa.Column("integrity", sa.String(8), nullable=True))
    # {"algorithm": ..., "verified_by": ...} once the upload completes; NULL before, and
    # for uploads completed before 0010.
    op.add_column("uploads", sa.Column("integrity", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("uploads") as batch:
        batch.drop_column("integrity")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("integrity")
