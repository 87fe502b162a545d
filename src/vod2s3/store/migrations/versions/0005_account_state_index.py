"""An index for counting an account's uploads by state (the per-account queue cap).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_uploads_account_id_state", "uploads", ["account_id", "state"])


def downgrade() -> None:
    op.drop_index("ix_uploads_account_id_state", table_name="uploads")
