"""Which database failures mean "unavailable", and an outage logged once, not per request.

:func:`unavailable` is the one place that decides. A failure is *unavailable* when the
same statement may well succeed later with no change to the code or the data:

- any ``OSError`` from the driver: a refused or reset connection, an unreachable host, a
  connect or command timeout (``TimeoutError``);
- a connection SQLAlchemy found lost mid-query (``connection_invalidated``: a failover,
  a restart, a proxy that cut it);
- PostgreSQL SQLSTATE classes ``08`` (connection exception), ``53`` (insufficient
  resources: too many connections, disk full, out of memory) and ``58`` (system error:
  I/O), and ``57P01``/``57P02``/``57P03`` (admin or crash shutdown, "the database system
  is starting up" / "shutting down"), ``25006`` (a read-only transaction: a standby after
  a failover), ``57014`` (a statement or user cancelled by timeout) and ``55P03`` (a lock
  not had within ``lock_timeout``);
- SQLite's ``SQLITE_BUSY`` and ``SQLITE_LOCKED`` (``database is locked`` past the busy
  timeout), ``SQLITE_CANTOPEN`` (the file or its folder cannot be opened), ``SQLITE_IOERR``,
  ``SQLITE_FULL`` (disk full), ``SQLITE_READONLY`` (a read-only file or mount) and
  ``SQLITE_PROTOCOL``.

Everything else stays a bug, answered 500 with its traceback: constraint violations,
syntax and schema errors (``no such table`` before a migration), serialization failures
and deadlocks (the code should retry those), a corrupt file (``SQLITE_CORRUPT``,
``SQLITE_NOTADB``: no amount of waiting repairs it), and the pool's own checkout timeout
(a leaked connection or a pool too small for the load).

:class:`DatabaseOutage` watches one engine: it logs a warning when the database stops
answering and one when it answers again (with how long and how many requests were
refused), never one per request.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterator

import sqlalchemy as sa

from bastion.errors import DatabaseUnavailableError

__all__ = ["DatabaseOutage", "unavailable"]

_logger = logging.getLogger("bastion.stores.sql")

_PG_CLASSES = ("08", "53", "58")
_PG_STATES = frozenset({"57P01", "57P02", "57P03", "25006", "57014", "55P03"})
_SQLITE_CODES = {
    5: "SQLITE_BUSY",
    6: "SQLITE_LOCKED",
    8: "SQLITE_READONLY",
    10: "SQLITE_IOERR",
    13: "SQLITE_FULL",
    14: "SQLITE_CANTOPEN",
    15: "SQLITE_PROTOCOL",
}


def unavailable(
    error: BaseException, *, outage: DatabaseOutage | None = None
) -> DatabaseUnavailableError | None:
    """A :class:`DatabaseUnavailableError` when ``error`` (a SQLAlchemy, asyncpg, sqlite3
    or OS error, or one that has such a cause) means the database does not answer; None
    when it is anything else. The reason names the failure's kind, never its message
    (which may quote a statement's values)."""
    for cause in _causes(error):
        reason = _reason(cause)
        if reason is not None:
            return DatabaseUnavailableError(f"database unavailable: {reason}", outage=outage)
    return None


def _causes(error: BaseException) -> Iterator[BaseException]:
    """``error``, the driver's error SQLAlchemy wraps, and their causes (a few deep)."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [error]
    while todo and len(seen) < 8:
        cause = todo.pop(0)
        if cause is None or any(cause is s for s in seen):
            continue
        seen.append(cause)
        yield cause
        todo.extend([getattr(cause, "orig", None), cause.__cause__])


def _reason(error: BaseException) -> str | None:
    if isinstance(error, DatabaseUnavailableError):
        return error.reason
    if isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated:
        return "the connection was lost"
    if isinstance(error, OSError):
        return type(error).__name__
    if isinstance(error, sqlite3.Error):
        name = _SQLITE_CODES.get((getattr(error, "sqlite_errorcode", None) or 0) & 0xFF)
        return name
    state = getattr(error, "sqlstate", None)
    if isinstance(state, str) and (state.startswith(_PG_CLASSES) or state in _PG_STATES):
        return f"SQLSTATE {state}"
    return None


class DatabaseOutage:
    """The state of one engine's database, as its statements find it.

    :meth:`failed` (a statement found the database unavailable) logs ``database
    unavailable`` once when an outage starts; :meth:`answered` (a statement succeeded)
    ends it with ``database recovered after N s, M requests refused``, once a statement
    succeeds ``quiet`` seconds after the last failure (so that reads a write lock does not
    stop do not end it while writes still fail); :meth:`refused` counts a refused request.
    All three run on the event loop's thread.
    """

    def __init__(self, *, quiet: float = 1.0, now: Callable[[], float] = time.monotonic) -> None:
        self._quiet = quiet
        self._now = now
        self._since: float | None = None
        self._last_failure = 0.0
        self._refused = 0

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, error: DatabaseUnavailableError) -> None:
        now = self._now()
        self._last_failure = now
        if self._since is None:
            self._since = now
            self._refused = 0
            _logger.warning("%s; answering 503 until it answers again", error.reason)

    def refused(self) -> None:
        if self._since is not None:
            self._refused += 1

    def answered(self) -> None:
        if self._since is None:
            return
        now = self._now()
        if now - self._last_failure < self._quiet:
            return
        _logger.warning(
            "database recovered after %.0f s, %d requests refused",
            now - self._since,
            self._refused,
        )
        self._since = None
