"""When an account's token version last changed: it revokes the tokens that carry no
version (an external issuer's access tokens in resource-server mode).

Revision ID: bastion_0003
Revises: bastion_0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bastion.stores.sql import UTCDateTime

revision: str = "bastion_0003"
down_revision: str | None = "bastion_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("tokens_revoked_at", UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("tokens_revoked_at")
