"""SQL backends (SQLite through aiosqlite, PostgreSQL through asyncpg)."""

from bastion.stores.sql.alerts import SQLAlertStore
from bastion.stores.sql.chain import EventChain
from bastion.stores.sql.denials import SQLDenialStore
from bastion.stores.sql.engine import create_engine, ping
from bastion.stores.sql.links import SQLExternalLinkStore
from bastion.stores.sql.mfa import SQLMFAStore
from bastion.stores.sql.outage import DatabaseOutage, unavailable
from bastion.stores.sql.stores import (
    SQLAccountStore,
    SQLEventStore,
    SQLOneTimeTokenStore,
    SQLSessionStore,
)
from bastion.stores.sql.tables import UTCDateTime

__all__ = [
    "DatabaseOutage",
    "EventChain",
    "SQLAccountStore",
    "SQLAlertStore",
    "SQLDenialStore",
    "SQLEventStore",
    "SQLExternalLinkStore",
    "SQLMFAStore",
    "SQLOneTimeTokenStore",
    "SQLSessionStore",
    "UTCDateTime",
    "create_engine",
    "ping",
    "unavailable",
]
