"""Signed checkpoints of the event chain, written by retention purges; 64-bit event ids.

A purge (``bastion events purge``) deletes the oldest security events and records, in a
checkpoint signed with the chain key, what it deleted and what the first kept event is
chained to, so that ``bastion events verify`` still verifies the rest. On PostgreSQL the
event id becomes a BIGINT (SQLite's integer key is 64-bit already).

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bastion.stores.sql import UTCDateTime

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "security_event_checkpoints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("before", UTCDateTime(timezone=True), nullable=False),
        sa.Column("through_id", sa.BigInteger(), nullable=False),
        sa.Column("purged", sa.BigInteger(), nullable=False),
        sa.Column("chain_mac", sa.String(length=64), nullable=False),
        sa.Column("previous", sa.String(length=64), nullable=False),
        sa.Column("mac", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("security_events", "id", type_=sa.BigInteger(), existing_nullable=False)
        op.execute("ALTER SEQUENCE security_events_id_seq AS BIGINT")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER SEQUENCE security_events_id_seq AS INTEGER")
        op.alter_column("security_events", "id", type_=sa.Integer(), existing_nullable=False)
    op.drop_table("security_event_checkpoints")
