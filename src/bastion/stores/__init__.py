"""Stores behind small protocols, with backends chosen by URL.

``open_stores(database_url, redis_url)``:

- ``memory://`` as the database URL keeps accounts, sessions and events in process
  (for tests and library use);
- ``sqlite+aiosqlite://...`` and ``postgresql+asyncpg://...`` keep them in SQL;
- revocation state is cached in process unless ``redis_url`` (``redis://``,
  ``rediss://``) is set; its durable record (``Stores.denials``) is the database's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from bastion._extras import require
from bastion._redis_client import REDIS_PREFIX
from bastion.stores.alerts import Alert, AlertStore, MemoryAlertStore
from bastion.stores.base import (
    SEVERITIES,
    Account,
    AccountChange,
    AccountStore,
    AuthSession,
    Denial,
    DenialStore,
    EventPosition,
    EventQuery,
    EventStore,
    ExternalLink,
    ExternalLinkStore,
    MFAStore,
    OneTimeToken,
    OneTimeTokenStore,
    RevocationStore,
    RotateOutcome,
    SecurityEvent,
    SessionStore,
    Severity,
    TokenUse,
    TOTPFactor,
    UserState,
)
from bastion.stores.memory import (
    MemoryAccountStore,
    MemoryDenialStore,
    MemoryEventStore,
    MemoryExternalLinkStore,
    MemoryMFAStore,
    MemoryOneTimeTokenStore,
    MemoryRevocationStore,
    MemorySessionStore,
)

__all__ = [
    "SEVERITIES",
    "Account",
    "AccountChange",
    "AccountStore",
    "Alert",
    "AlertStore",
    "AuthSession",
    "Denial",
    "DenialStore",
    "EventPosition",
    "EventQuery",
    "EventStore",
    "ExternalLink",
    "ExternalLinkStore",
    "MFAStore",
    "OneTimeToken",
    "OneTimeTokenStore",
    "RevocationStore",
    "RotateOutcome",
    "SecurityEvent",
    "SessionStore",
    "Severity",
    "Stores",
    "TOTPFactor",
    "TokenUse",
    "UserState",
    "open_stores",
]


@dataclass
class Stores:
    accounts: AccountStore
    sessions: SessionStore
    revocation: RevocationStore
    events: EventStore
    tokens: OneTimeTokenStore
    denials: DenialStore  # the durable record ``revocation`` caches
    engine: AsyncEngine | None = None
    alerts: AlertStore = field(default_factory=MemoryAlertStore)
    links: ExternalLinkStore = field(default_factory=MemoryExternalLinkStore)
    mfa: MFAStore = None  # type: ignore[assignment]  # set in __post_init__ when not given

    def __post_init__(self) -> None:
        links, accounts = self.links, self.accounts
        if (
            isinstance(accounts, MemoryAccountStore)
            and isinstance(links, MemoryExternalLinkStore)
            and links.accounts is None
        ):
            links.accounts = accounts
        if self.mfa is None:
            if not isinstance(self.accounts, MemoryAccountStore):
                raise ValueError("the MFA store of SQL accounts must be given")
            self.mfa = MemoryMFAStore(self.accounts)

    async def aclose(self) -> None:
        await self.revocation.aclose()
        if self.engine is not None:
            await self.engine.dispose()


def open_stores(
    database_url: str,
    redis_url: str | None = None,
    *,
    redis_prefix: str = REDIS_PREFIX,
    engine: AsyncEngine | None = None,
    event_chain_key: bytes | None = None,
    event_chain_head: Path | None = None,
) -> Stores:
    """Build the stores for these URLs; raise ValueError on an unknown scheme, and
    ConfigurationError when the extra a URL needs (redis, postgres) is not installed.

    ``event_chain_key`` chains the SQL stores' security events (``bastion.events.chain``),
    and ``event_chain_head`` is the file its head is published to after each write
    (``bastion.stores.sql.chain``); the memory stores do not chain."""
    revocation: RevocationStore
    if redis_url:
        if not redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("BASTION_REDIS_URL must be a redis://, rediss:// or unix:// URL")
        require("redis", "BASTION_REDIS_URL", "a Redis URL")
        from bastion.stores.redis import RedisRevocationStore

        revocation = RedisRevocationStore.from_url(redis_url, prefix=redis_prefix)
    else:
        revocation = MemoryRevocationStore()

    if database_url.startswith("memory://"):
        sessions, events = MemorySessionStore(), MemoryEventStore()
        tokens = MemoryOneTimeTokenStore()
        accounts = MemoryAccountStore(sessions, events, tokens)
        denials = MemoryDenialStore(sessions)
        return Stores(accounts, sessions, revocation, events, tokens, denials)
    if not database_url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        raise ValueError(
            "BASTION_DATABASE_URL must start with sqlite+aiosqlite://, "
            "postgresql+asyncpg:// or memory://"
        )
    if database_url.startswith("postgresql"):
        require("postgres", "BASTION_DATABASE_URL", "a PostgreSQL URL")
    from bastion.stores.sql import (
        EventChain,
        SQLAccountStore,
        SQLAlertStore,
        SQLDenialStore,
        SQLEventStore,
        SQLExternalLinkStore,
        SQLMFAStore,
        SQLOneTimeTokenStore,
        SQLSessionStore,
        create_engine,
    )

    engine = engine or create_engine(database_url)
    # One chain for every store that writes events: one head for the process.
    chain = (
        EventChain(event_chain_key, head_file=event_chain_head)
        if event_chain_key is not None
        else None
    )
    return Stores(
        SQLAccountStore(engine, chain=chain),
        SQLSessionStore(engine),
        revocation,
        SQLEventStore(engine, chain=chain),
        SQLOneTimeTokenStore(engine),
        SQLDenialStore(engine),
        engine=engine,
        alerts=SQLAlertStore(engine),
        links=SQLExternalLinkStore(engine),
        mfa=SQLMFAStore(engine),
    )
