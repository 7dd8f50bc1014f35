"""SQL backends (SQLite through aiosqlite, PostgreSQL through asyncpg)."""

from bastion.stores.sql.alerts import SQLAlertStore
from bastion.stores.sql.engine import create_engine
from bastion.stores.sql.stores import (
    SQLAccountStore,
    SQLEventStore,
    SQLOneTimeTokenStore,
    SQLSessionStore,
)
from bastion.stores.sql.tables import UTCDateTime

__all__ = [
    "SQLAccountStore",
    "SQLAlertStore",
    "SQLEventStore",
    "SQLOneTimeTokenStore",
    "SQLSessionStore",
    "UTCDateTime",
    "create_engine",
]
