"""One-time link tokens (email verification, password reset, unlock), stored as digests.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bastion.stores.sql import UTCDateTime

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "one_time_tokens",
        sa.Column("selector", sa.String(length=32), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("state", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("selector"),
    )
    with op.batch_alter_table("one_time_tokens", schema=None) as batch_op:
        batch_op.create_index("ix_one_time_tokens_expires_at", ["expires_at"], unique=False)
        batch_op.create_index(
            "ix_one_time_tokens_user_purpose", ["user_id", "purpose"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("one_time_tokens", schema=None) as batch_op:
        batch_op.drop_index("ix_one_time_tokens_user_purpose")
        batch_op.drop_index("ix_one_time_tokens_expires_at")
    op.drop_table("one_time_tokens")
