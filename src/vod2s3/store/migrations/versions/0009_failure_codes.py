"""ScaleEngine-style failure codes and failure status: the code of a remembered answer, and
an account's own choice of HTTP status for failures.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL for answers remembered before: their code follows from their HTTP status.
    op.add_column("command_answers", sa.Column("code", sa.String(4), nullable=True))
    # NULL: the service's VOD2S3_FAILURE_HTTP_STATUS; "200" or "native" for this account.
    op.add_column("accounts", sa.Column("failure_status", sa.String(8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("failure_status")
    with op.batch_alter_table("command_answers") as batch:
        batch.drop_column("code")
