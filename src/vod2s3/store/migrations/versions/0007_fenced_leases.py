"""Leases across hosts: a fencing token per claim, the worker holding each upload, the
workers themselves, and an index of queued uploads per account that idle accounts stay out of.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("process_started", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("volumes", sa.JSON, nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("started", sa.DateTime, nullable=False),
        sa.Column("last_heartbeat", sa.DateTime, nullable=False),
        sa.Column("stopped", sa.DateTime, nullable=True),
        sa.Column("stop_reason", sa.String(32), nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("id", name="pk_workers"),
    )
    op.create_index("ix_workers_stopped", "workers", ["stopped"])
    with op.batch_alter_table("uploads") as batch:
        batch.add_column(
            sa.Column("lease_token", sa.BigInteger, nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("worker_id", sa.Integer, nullable=True))
    op.create_index(
        "ix_uploads_queued_account_id",
        "uploads",
        ["account_id", "next_attempt_at", "id"],
        postgresql_where=sa.text("state = 'queued'"),
        sqlite_where=sa.text("state = 'queued'"),
    )
    op.create_index(
        "ix_uploads_uploading_worker_id",
        "uploads",
        ["worker_id"],
        postgresql_where=sa.text("state = 'uploading'"),
        sqlite_where=sa.text("state = 'uploading'"),
    )


def downgrade() -> None:
    op.drop_index("ix_uploads_uploading_worker_id", table_name="uploads")
    op.drop_index("ix_uploads_queued_account_id", table_name="uploads")
    with op.batch_alter_table("uploads") as batch:
        batch.drop_column("worker_id")
        batch.drop_column("lease_token")
    op.drop_index("ix_workers_stopped", table_name="workers")
    op.drop_table("workers")
