"""The durable record of revocations: access tokens denied by ``jti``, and an index on
the sessions' revocation time.

The revocation store (in process, or Redis) is a cache rebuilt from these at start-up
and whenever Redis has lost its data: the denied tokens that have not expired, and the
sessions revoked within the longest access-token lifetime.

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bastion.stores.sql import UTCDateTime

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "token_denials",
        sa.Column("token_id", sa.String(length=128), nullable=False),
        sa.Column("expires_at", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token_id"),
    )
    with op.batch_alter_table("token_denials", schema=None) as batch_op:
        batch_op.create_index("ix_token_denials_expires_at", ["expires_at"], unique=False)
    with op.batch_alter_table("auth_sessions", schema=None) as batch_op:
        batch_op.create_index("ix_auth_sessions_revoked_at", ["revoked_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("auth_sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_auth_sessions_revoked_at")
    with op.batch_alter_table("token_denials", schema=None) as batch_op:
        batch_op.drop_index("ix_token_denials_expires_at")
    op.drop_table("token_denials")
