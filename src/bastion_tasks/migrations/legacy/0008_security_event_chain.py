"""A tamper-evident chain over the stored security events.

Each event written from now on carries ``chain_prev`` (the MAC of the event stored
before it) and ``chain_mac`` (an HMAC-SHA256 of that link and the event's content),
so that an edit, a deletion or a forged row is found by ``bastion events verify``.
Rows written before this revision keep NULLs: they precede the chain.

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("security_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("chain_prev", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("chain_mac", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("security_events", schema=None) as batch_op:
        batch_op.drop_column("chain_mac")
        batch_op.drop_column("chain_prev")
