"""Async engines for SQLite (aiosqlite) and PostgreSQL (asyncpg)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bastion.errors import DatabaseUnavailableError
from bastion.stores.sql.outage import DatabaseOutage, unavailable

__all__ = ["create_engine", "ping", "write_locking"]

_IMMEDIATE = "bastion_sqlite_immediate"
_BUSY_TIMEOUT = 30.0  # seconds; ``?timeout=`` in the URL changes it
# PostgreSQL: seconds to connect (``?timeout=`` in the URL): below the request timeout
# (30 s), so that a server that swallows packets is found unavailable, not just slow.
_CONNECT_TIMEOUT = 10.0


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout (30 s, or
    ``?timeout=<seconds>`` in the URL); PostgreSQL a connect timeout (10 s, or the same).

    A database that does not answer raises :class:`~bastion.errors.DatabaseUnavailableError`
    from every statement, connect and commit (``bastion.stores.sql.outage`` says which
    failures are that), and the engine's :class:`DatabaseOutage` logs the outage once.
    """
    parsed = sa.make_url(url)
    outage = DatabaseOutage()
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        busy = float(parsed.query.get("timeout", _BUSY_TIMEOUT))  # type: ignore[arg-type]
        # sqlite3's ``timeout`` is the connection's busy timeout (sqlite3_busy_timeout).
        engine = create_async_engine(url, connect_args={"timeout": busy}, **kwargs)
        _watch(engine, outage)

        @sa.event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            with _unavailable_raised(outage):
                cursor = dbapi_connection.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA foreign_keys=ON")
                cursor.close()
            # Let SQLAlchemy, not the driver, open transactions (SQLAlchemy's SQLite docs,
            # "Serializable isolation / Savepoints / Transactional DDL").
            dbapi_connection.isolation_level = None

        @sa.event.listens_for(engine.sync_engine, "begin")
        def _begin(conn: Any) -> None:
            # Read-then-write transactions (refresh-token rotation) take the write lock up
            # front: otherwise two racing in WAL mode fail with SQLITE_BUSY. Everything
            # else begins deferred, so readers never wait for each other.
            immediate = conn.get_execution_options().get(_IMMEDIATE, False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    connect = float(parsed.query.get("timeout", _CONNECT_TIMEOUT))  # type: ignore[arg-type]
    kwargs["connect_args"] = {"timeout": connect, **kwargs.get("connect_args", {})}
    engine = create_async_engine(parsed.difference_update_query(["timeout"]), **kwargs)
    _watch(engine, outage)
    return engine


def _watch(engine: AsyncEngine, outage: DatabaseOutage) -> None:
    """Raise :class:`DatabaseUnavailableError` for a database that does not answer, and
    tell ``outage`` of each failure and success."""

    @sa.event.listens_for(engine.sync_engine, "do_connect")
    def _connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        # A refused or timed-out connect is the driver's OSError, which SQLAlchemy
        # passes on unwrapped and without its handle_error event.
        with _unavailable_raised(outage):
            return dialect.connect(*cargs, **cparams)

    @sa.event.listens_for(engine.sync_engine, "handle_error")
    def _classify(context: sa.engine.ExceptionContext) -> BaseException | None:
        original = context.original_exception
        # The pool's pre-ping handles a lost connection itself (it reconnects); and a
        # cancelled request (CancelledError, a BaseException) counts as a disconnect
        # for SQLAlchemy but says nothing about the database.
        if context.is_pre_ping or not isinstance(original, Exception):
            return None
        error = unavailable(original, outage=outage)
        if error is None and context.is_disconnect:
            reason = "database unavailable: the connection was lost"
            error = DatabaseUnavailableError(reason, outage=outage)
        if error is not None:
            outage.failed(error)
        return error

    @sa.event.listens_for(engine.sync_engine, "after_cursor_execute")
    def _answered(*_args: Any) -> None:
        outage.answered()


@contextmanager
def _unavailable_raised(outage: DatabaseOutage) -> Iterator[None]:
    """Turn a failure of the database into :class:`DatabaseUnavailableError`."""
    try:
        yield
    except Exception as exc:
        error = unavailable(exc, outage=outage)
        if error is None:
            raise
        outage.failed(error)
        raise error from exc


def write_locking(engine: AsyncEngine) -> AsyncEngine:
    """The same engine, but its transactions lock for writing at BEGIN (SQLite only)."""
    return engine.execution_options(**{_IMMEDIATE: True})


async def ping(engine: AsyncEngine) -> None:
    """Check that the database answers and takes writes (SQLite: its write lock within
    the busy timeout), for a readiness probe.

    Raises:
        DatabaseUnavailableError: it does not.
    """
    async with write_locking(engine).begin() as conn:
        await conn.execute(sa.text("SELECT 1"))
