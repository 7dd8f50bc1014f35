"""SQLModel tables of the security core (accounts, sessions, refresh tokens, events).

The task service adds its own tables to the same ``SQLModel.metadata``. The core's
Alembic history (``bastion/migrations``, run by ``bastion.migrate``) creates these, and
tests check they agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel

__all__ = [
    "AccountReservationRow",
    "AccountRow",
    "AuthSessionRow",
    "ExternalIdentityRow",
    "OneTimeTokenRow",
    "RecoveryCodeRow",
    "RefreshTokenRow",
    "SecurityAlertRow",
    "SecurityEventRow",
    "TOTPFactorRow",
    "TokenDenialRow",
    "UTCDateTime",
]


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _utc(**kwargs: Any) -> Any:
    return Field(sa_type=UTCDateTime, **kwargs)


class AccountRow(SQLModel, table=True):
    __tablename__ = "accounts"
    __table_args__ = (
        sa.Index("ix_accounts_created", "created_at", "id"),
        sa.Index("ix_accounts_role_active", "role", "is_active"),
    )

    id: UUID = Field(primary_key=True)
    email: str = Field(max_length=320)
    email_key: str = Field(max_length=320, unique=True)
    display_name: str | None = Field(default=None, max_length=100)
    password_hash: str | None = Field(default=None, max_length=512)
    role: str = Field(default="member", max_length=16)
    is_active: bool = True
    email_verified: bool = False
    mfa_enabled: bool = False
    token_version: int = 0
    locked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    tokens_revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = _utc()
    updated_at: datetime = _utc()


class AccountReservationRow(SQLModel, table=True):
    """An account id reserved for an email that has no account yet (a pending share)."""

    __tablename__ = "account_reservations"

    email_key: str = Field(primary_key=True, max_length=320)
    id: UUID = Field(unique=True)
    created_at: datetime = _utc()


class AuthSessionRow(SQLModel, table=True):
    # Sessions revoked recently are denied in the revocation cache: its rebuild reads
    # them by ``revoked_at`` (migration 0010).
    __tablename__ = "auth_sessions"
    __table_args__ = (sa.Index("ix_auth_sessions_revoked_at", "revoked_at"),)

    id: UUID = Field(primary_key=True)
    user_id: UUID = Field(foreign_key="accounts.id", index=True, ondelete="CASCADE")
    created_at: datetime = _utc()
    last_used_at: datetime = _utc()
    absolute_expires_at: datetime = _utc()
    ip_address: str | None = Field(default=None, max_length=45)
    user_agent: str | None = Field(default=None, max_length=512)
    revoked_at: datetime | None = _utc(default=None)
    revoked_reason: str | None = Field(default=None, max_length=64)
    amr: str = Field(default="", max_length=64)


class RefreshTokenRow(SQLModel, table=True):
    """Only the SHA-256 digest of a refresh token is kept: the table holds no usable token."""

    __tablename__ = "refresh_tokens"

    digest: str = Field(primary_key=True, max_length=64)
    session_id: UUID = Field(foreign_key="auth_sessions.id", index=True, ondelete="CASCADE")
    created_at: datetime = _utc()
    used_at: datetime | None = _utc(default=None)


class TokenDenialRow(SQLModel, table=True):
    """An access token denied by its ``jti`` until it has expired: the durable record
    the revocation cache is rebuilt from (migration 0010)."""

    __tablename__ = "token_denials"

    token_id: str = Field(primary_key=True, max_length=128)
    expires_at: datetime = _utc(index=True)


class TOTPFactorRow(SQLModel, table=True):
    """An account's TOTP factor, its secret sealed (migration bastion_0004)."""

    __tablename__ = "mfa_totp"

    user_id: UUID = Field(primary_key=True, foreign_key="accounts.id", ondelete="CASCADE")
    secret: str = Field(max_length=256)
    created_at: datetime = _utc()
    confirmed_at: datetime | None = _utc(default=None)


class RecoveryCodeRow(SQLModel, table=True):
    """A recovery code's keyed digest (migration bastion_0004)."""

    __tablename__ = "mfa_recovery_codes"

    user_id: UUID = Field(primary_key=True, foreign_key="accounts.id", ondelete="CASCADE")
    digest: str = Field(primary_key=True, max_length=64)
    used_at: datetime | None = _utc(default=None)


class ExternalIdentityRow(SQLModel, table=True):
    """An identity at an external sign-in provider, linked to an account (migration
    bastion_0002)."""

    __tablename__ = "external_identities"
    __table_args__ = (sa.UniqueConstraint("user_id", "provider"),)

    provider: str = Field(primary_key=True, max_length=32)
    subject: str = Field(primary_key=True, max_length=255)
    user_id: UUID = Field(foreign_key="accounts.id", ondelete="CASCADE")
    email: str | None = Field(default=None, max_length=320)
    created_at: datetime = _utc()


class OneTimeTokenRow(SQLModel, table=True):
    """A one-time link's token: the public selector and the digest of the secret half."""

    __tablename__ = "one_time_tokens"
    __table_args__ = (sa.Index("ix_one_time_tokens_user_purpose", "user_id", "purpose"),)

    selector: str = Field(primary_key=True, max_length=32)
    digest: str = Field(max_length=64)
    purpose: str = Field(max_length=32)
    user_id: UUID = Field(foreign_key="accounts.id", ondelete="CASCADE")
    state: str = Field(max_length=64)
    created_at: datetime = _utc()
    expires_at: datetime = _utc(index=True)
    used_at: datetime | None = _utc(default=None)


class SecurityEventRow(SQLModel, table=True):
    """One stored security event. Read newest first in (timestamp, id) order, alone or
    under one of the filters: each index ends in (timestamp, id), so a filtered page is
    one range scan of its index (migration 0006)."""

    __tablename__ = "security_events"
    __table_args__ = (
        sa.Index("ix_security_events_time_id", "timestamp", "id"),
        sa.Index("ix_security_events_type_time_id", "event_type", "timestamp", "id"),
        sa.Index("ix_security_events_user_time_id", "user_id", "timestamp", "id"),
        sa.Index("ix_security_events_ip_time_id", "ip_address", "timestamp", "id"),
    )

    # 64-bit on PostgreSQL (migration 0009); SQLite's INTEGER PRIMARY KEY is 64-bit.
    id: int | None = Field(
        default=None,
        sa_type=sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
    )
    timestamp: datetime = _utc()
    event_type: str = Field(max_length=64)
    severity: str = Field(max_length=16)
    user_id: str | None = Field(default=None, max_length=64)
    ip_address: str | None = Field(default=None, max_length=45)
    endpoint: str | None = Field(default=None, max_length=512)
    method: str | None = Field(default=None, max_length=16)
    details: str = Field(default="", max_length=1024)
    request_id: str | None = Field(default=None, max_length=64)
    extra: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    # The tamper-evident chain (bastion.events.chain, migration 0008): hex HMAC-SHA256
    # values, NULL only on a row written by a store without its key (which
    # ``bastion events verify`` reports: every store of the service has the key).
    chain_prev: str | None = Field(default=None, max_length=64)
    chain_mac: str | None = Field(default=None, max_length=64)


class SecurityEventCheckpointRow(SQLModel, table=True):
    """What a retention purge removed from the start of the event chain, signed with the
    chain key (bastion.events.chain): verification starts from the newest checkpoint."""

    __tablename__ = "security_event_checkpoints"

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = _utc()
    before: datetime = _utc()  # the purge removed the events older than this
    through_id: int = Field(sa_type=sa.BigInteger())  # the last event removed
    purged: int = Field(sa_type=sa.BigInteger())
    chain_mac: str = Field(max_length=64)  # what the first event kept is chained to
    previous: str = Field(max_length=64)  # the previous checkpoint's mac, or GENESIS
    mac: str = Field(max_length=64)


class SecurityAlertRow(SQLModel, table=True):
    """One alert raised by a rule (bastion.alerts), read newest first."""

    __tablename__ = "security_alerts"
    __table_args__ = (sa.Index("ix_security_alerts_created_id", "created_at", "id"),)

    id: UUID = Field(primary_key=True)
    rule: str = Field(max_length=64)
    alert_key: str = Field(max_length=128)
    count: int
    window_seconds: int
    first_event_at: datetime = _utc()
    last_event_at: datetime = _utc()
    severity: str = Field(max_length=16)
    created_at: datetime = _utc()
