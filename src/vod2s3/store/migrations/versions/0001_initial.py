"""Accounts and uploads.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("cdn", sa.Integer, nullable=False),
        sa.Column("storage_user", sa.String(64), nullable=False),
        sa.Column("api_key", sa.String(64), nullable=False),
        sa.Column("secret_enc", sa.Text, nullable=False),
        sa.Column("previous_secret_enc", sa.Text, nullable=True),
        sa.Column("previous_secret_expires", sa.DateTime, nullable=True),
        sa.Column("disabled", sa.Boolean, nullable=False),
        sa.Column("aws_access_key_id", sa.String(128), nullable=False),
        sa.Column("aws_secret_access_key_enc", sa.Text, nullable=False),
        sa.Column("aws_region", sa.String(32), nullable=False),
        sa.Column("aws_endpoint_url", sa.String(2048), nullable=False),
        sa.Column("allowed_buckets", sa.JSON, nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_accounts"),
        sa.UniqueConstraint("cdn", name="uq_accounts_cdn"),
        sa.UniqueConstraint("api_key", name="uq_accounts_api_key"),
    )
    op.create_table(
        "uploads",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("account_id", sa.Integer, nullable=False),
        sa.Column("cdn_id", sa.Integer, nullable=False),
        sa.Column("request_signature", sa.String(128), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("volume", sa.String(64), nullable=False),
        sa.Column("bucket", sa.String(63), nullable=False),
        sa.Column("destination_path", sa.Text, nullable=False),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("acl", sa.String(16), nullable=False),
        sa.Column("callback", sa.Text, nullable=False),
        sa.Column("options", sa.JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("error_code", sa.String(64), nullable=False),
        sa.Column("results", sa.JSON, nullable=False),
        sa.Column("checksum", sa.String(128), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("bytes_total", sa.BigInteger, nullable=False),
        sa.Column("bytes_uploaded", sa.BigInteger, nullable=False),
        sa.Column("callback_state", sa.String(16), nullable=False),
        sa.Column("callback_attempts", sa.Integer, nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("last_updated", sa.DateTime, nullable=False),
        sa.Column("started", sa.DateTime, nullable=True),
        sa.Column("finished", sa.DateTime, nullable=True),
        sa.Column("next_attempt_at", sa.DateTime, nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_expires", sa.DateTime, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_uploads"),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_uploads_account_id_accounts"
        ),
        sa.UniqueConstraint(
            "account_id", "request_signature", name="uq_uploads_account_id_request_signature"
        ),
        sa.CheckConstraint(
            "state IN ('queued', 'uploading', 'completed', 'failed', 'cancelled')",
            name="ck_uploads_state",
        ),
        sa.CheckConstraint(
            "callback_state IN ('none', 'pending', 'delivered', 'failed')",
            name="ck_uploads_callback_state",
        ),
        sa.CheckConstraint("acl IN ('private', 'public-read')", name="ck_uploads_acl"),
    )
    op.create_index("ix_uploads_account_id_id", "uploads", ["account_id", "id"])
    op.create_index("ix_uploads_state_next_attempt_at", "uploads", ["state", "next_attempt_at"])


def downgrade() -> None:
    op.drop_table("uploads")
    op.drop_table("accounts")
