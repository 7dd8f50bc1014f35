"""Security alerts: one row per alert a rule raised (bastion.alerts), read newest first.

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bastion.stores.sql import UTCDateTime

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "security_alerts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("alert_key", sa.String(length=128), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("window_seconds", sa.Integer(), nullable=False),
        sa.Column("first_event_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_event_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("security_alerts", schema=None) as batch_op:
        batch_op.create_index("ix_security_alerts_created_id", ["created_at", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("security_alerts", schema=None) as batch_op:
        batch_op.drop_index("ix_security_alerts_created_id")
    op.drop_table("security_alerts")
