"""Indexes for deleting finished uploads: by when they finished, and their callback
deliveries by upload (without it, each delete scans the whole outbox).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_uploads_finished", "uploads", ["finished"])
    op.create_index("ix_callback_deliveries_upload_id", "callback_deliveries", ["upload_id"])


def downgrade() -> None:
    op.drop_index("ix_callback_deliveries_upload_id", table_name="callback_deliveries")
    op.drop_index("ix_uploads_finished", table_name="uploads")
