"""The uplink budget: an account's own cap, and what each worker sends (its heartbeat
writes it, the dashboard reads it).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Bytes per second; NULL: no cap of its own (the worker's cap still holds).
    op.add_column("accounts", sa.Column("max_bandwidth", sa.BigInteger, nullable=True))
    # vod2s3.bandwidth.report.SendingReport as JSON; NULL until the first heartbeat.
    op.add_column("workers", sa.Column("sending", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("sending")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("max_bandwidth")
