"""The security core's tables: accounts, sessions, tokens, security events and alerts.

The base of the core's own history (branch ``bastion``). It creates the core's part of
the schema the task service's former single history built at its revision 0010, table
for table and index for index, so that a database migrated by that history is stamped
here without a change (``bastion_tasks.migrate``) and one built here matches it.

Revision ID: bastion_0001
Revises:
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bastion.stores.sql import UTCDateTime

revision: str = "bastion_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("bastion",)
depends_on: str | Sequence[str] | None = None

# 64-bit on PostgreSQL; SQLite's INTEGER PRIMARY KEY is 64-bit and must stay INTEGER.
_EVENT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("email_key", sa.String(length=320), nullable=False),
        sa.Column("display_name", sa.String(length=100), nullable=True),
        sa.Column("password_hash", sa.String(length=512), nullable=True),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("email_verified", sa.Boolean(), nullable=False),
        sa.Column("mfa_enabled", sa.Boolean(), nullable=False),
        sa.Column("token_version", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("locked_at", UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("email_key"),
    )
    op.create_index("ix_accounts_created", "accounts", ["created_at", "id"])
    op.create_index("ix_accounts_role_active", "accounts", ["role", "is_active"])

    op.create_table(
        "account_reservations",
        sa.Column("email_key", sa.String(length=320), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("email_key"),
        sa.UniqueConstraint("id"),
    )

    op.create_table(
        "auth_sessions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("absolute_expires_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("ip_address", sa.String(length=45), nullable=True),
        sa.Column("user_agent", sa.String(length=512), nullable=True),
        sa.Column("revoked_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_reason", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_auth_sessions_user_id", "auth_sessions", ["user_id"])
    op.create_index("ix_auth_sessions_revoked_at", "auth_sessions", ["revoked_at"])

    op.create_table(
        "refresh_tokens",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["session_id"], ["auth_sessions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("digest"),
    )
    op.create_index("ix_refresh_tokens_session_id", "refresh_tokens", ["session_id"])

    op.create_table(
        "token_denials",
        sa.Column("token_id", sa.String(length=128), nullable=False),
        sa.Column("expires_at", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token_id"),
    )
    op.create_index("ix_token_denials_expires_at", "token_denials", ["expires_at"])

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
    op.create_index("ix_one_time_tokens_expires_at", "one_time_tokens", ["expires_at"])
    op.create_index("ix_one_time_tokens_user_purpose", "one_time_tokens", ["user_id", "purpose"])

    op.create_table(
        "security_events",
        sa.Column("id", _EVENT_ID, nullable=False),
        sa.Column("timestamp", UTCDateTime(timezone=True), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=True),
        sa.Column("ip_address", sa.String(length=45), nullable=True),
        sa.Column("endpoint", sa.String(length=512), nullable=True),
        sa.Column("method", sa.String(length=16), nullable=True),
        sa.Column("details", sa.String(length=1024), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        # The former history added this column to stored rows with the default '{}'.
        sa.Column("extra", sa.JSON(), nullable=False, server_default="{}"),
        sa.Column("chain_prev", sa.String(length=64), nullable=True),
        sa.Column("chain_mac", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_security_events_time_id", "security_events", ["timestamp", "id"])
    op.create_index(
        "ix_security_events_type_time_id", "security_events", ["event_type", "timestamp", "id"]
    )
    op.create_index(
        "ix_security_events_user_time_id", "security_events", ["user_id", "timestamp", "id"]
    )
    op.create_index(
        "ix_security_events_ip_time_id", "security_events", ["ip_address", "timestamp", "id"]
    )

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
    op.create_index("ix_security_alerts_created_id", "security_alerts", ["created_at", "id"])


def downgrade() -> None:
    for table in (
        "security_alerts",
        "security_event_checkpoints",
        "security_events",
        "one_time_tokens",
        "token_denials",
        "refresh_tokens",
        "auth_sessions",
        "account_reservations",
        "accounts",
    ):
        op.drop_table(table)  # a table's indexes go with it
