"""The first answer to each signed aws.cancel and aws.retry, so that a replay of the same
signed request is answered with it and changes nothing.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "command_answers",
        sa.Column("account_id", sa.Integer, nullable=False),
        sa.Column("signature", sa.String(128), nullable=False),
        sa.Column("command", sa.String(32), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("data", sa.JSON, nullable=True),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.PrimaryKeyConstraint("account_id", "signature", name="pk_command_answers"),
    )
    op.create_index("ix_command_answers_created", "command_answers", ["created"])


def downgrade() -> None:
    op.drop_index("ix_command_answers_created", table_name="command_answers")
    op.drop_table("command_answers")
