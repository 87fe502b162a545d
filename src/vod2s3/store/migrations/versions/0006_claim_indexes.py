"""Claims that do not sort the whole queue: accounts in round-robin order from an index, and
each account's due uploads from an index.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "UPDATE accounts SET last_claimed = '1970-01-01 00:00:00' WHERE last_claimed IS NULL"
    )
    with op.batch_alter_table("accounts") as batch:
        batch.alter_column(
            "last_claimed",
            existing_type=sa.DateTime,
            nullable=False,
            server_default="1970-01-01 00:00:00",
        )
    op.create_index("ix_accounts_last_claimed_id", "accounts", ["last_claimed", "id"])
    op.create_index(
        "ix_uploads_account_id_state_next_attempt_at",
        "uploads",
        ["account_id", "state", "next_attempt_at", "id"],
    )
    # The new index starts with (account_id, state): it serves the queue cap's count too.
    op.drop_index("ix_uploads_account_id_state", table_name="uploads")


def downgrade() -> None:
    op.create_index("ix_uploads_account_id_state", "uploads", ["account_id", "state"])
    op.drop_index("ix_uploads_account_id_state_next_attempt_at", table_name="uploads")
    op.drop_index("ix_accounts_last_claimed_id", table_name="accounts")
    with op.batch_alter_table("accounts") as batch:
        batch.alter_column("last_claimed", existing_type=sa.DateTime, nullable=True)
