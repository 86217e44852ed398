"""Calls served over Twilio webhooks: state between webhooks, TwiML per step

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 16:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "twilio_calls",
        sa.Column("call_sid", sa.String(length=64), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("finished", sa.Boolean(), nullable=False),
        sa.Column("claimed_step", sa.Integer(), nullable=True),
        sa.Column("claimed_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("call_sid", name=op.f("pk_twilio_calls")),
    )
    op.create_table(
        "twilio_steps",
        sa.Column("call_sid", sa.String(length=64), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("twiml", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["call_sid"], ["twilio_calls.call_sid"],
                                name=op.f("fk_twilio_steps_call_sid_twilio_calls")),
        sa.PrimaryKeyConstraint("call_sid", "step", name=op.f("pk_twilio_steps")),
    )


def downgrade() -> None:
    op.drop_table("twilio_steps")
    op.drop_table("twilio_calls")
