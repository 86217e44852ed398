"""Reversals owed to the central switch, kept until acknowledged

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 16:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "switch_reversals",
        sa.Column("idempotency_key", sa.String(length=128), nullable=False),
        sa.Column("message", sa.JSON(), nullable=False),
        sa.Column("reason", sa.String(length=120), nullable=False),
        sa.Column("queued_at", sa.DateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("idempotency_key", name=op.f("pk_switch_reversals")),
    )
    op.create_index(op.f("ix_switch_reversals_acknowledged_at"), "switch_reversals",
                    ["acknowledged_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_switch_reversals_acknowledged_at"), table_name="switch_reversals")
    op.drop_table("switch_reversals")
