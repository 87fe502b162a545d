"""An account's endpoint options: addressing style, a CA bundle, payload signing.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

COLUMNS = (
    # NULL: "auto" (path-style for a custom endpoint, virtual-hosted on AWS).
    sa.Column("addressing_style", sa.String(8), nullable=True),
    # NULL: the system's trust store; else a PEM file for an endpoint with a private CA.
    sa.Column("ca_bundle", sa.Text, nullable=True),
    # NULL: VOD2S3_PAYLOAD_SIGNING.
    sa.Column("payload_signing", sa.String(8), nullable=True),
)


def upgrade() -> None:
    for column in COLUMNS:
        op.add_column("accounts", column)


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        for column in reversed(COLUMNS):
            batch.drop_column(column.name)
