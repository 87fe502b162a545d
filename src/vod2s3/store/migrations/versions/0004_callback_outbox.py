"""Callback outbox, and the last delivery status and error on the upload.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("uploads") as batch:
        batch.add_column(
            sa.Column("callback_status", sa.Integer, nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("callback_error", sa.Text, nullable=False, server_default=""))
    op.create_table(
        "callback_deliveries",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("upload_id", sa.Integer, nullable=False),
        sa.Column("account_id", sa.Integer, nullable=False),
        sa.Column("delivery_id", sa.String(36), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime, nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_expires", sa.DateTime, nullable=True),
        sa.Column("last_status", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text, nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("updated", sa.DateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_callback_deliveries"),
        sa.ForeignKeyConstraint(
            ["upload_id"],
            ["uploads.id"],
            name="fk_callback_deliveries_upload_id_uploads",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("delivery_id", name="uq_callback_deliveries_delivery_id"),
        sa.CheckConstraint(
            "state IN ('pending', 'delivered', 'failed')", name="ck_callback_deliveries_state"
        ),
    )
    op.create_index(
        "ix_callback_deliveries_state_next_attempt_at",
        "callback_deliveries",
        ["state", "next_attempt_at"],
    )


def downgrade() -> None:
    op.drop_table("callback_deliveries")
    with op.batch_alter_table("uploads") as batch:
        batch.drop_column("callback_error")
        batch.drop_column("callback_status")
