"""Which database failures are "unavailable" (503), and the outage's two log lines."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from bastion.errors import DatabaseUnavailableError
from bastion.stores.sql import DatabaseOutage, create_engine, unavailable


def _sqlite_error(statement: str, path: Path) -> sqlite3.Error:
    conn = sqlite3.connect(path)
    try:
        conn.execute(statement)
    except sqlite3.Error as exc:
        return exc
    finally:
        conn.close()
    raise AssertionError("the statement did not fail")


class _PGError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__("message")
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(111, "Connect call failed"),
        ConnectionResetError(104, "reset by peer"),
        TimeoutError(),
        _PGError("57P03"),  # the database system is starting up
        _PGError("57P01"),  # terminating connection due to administrator command
        _PGError("08006"),  # connection failure
        _PGError("53300"),  # too many connections
        _PGError("25006"),  # read-only transaction: a standby after a failover
    ],
    ids=["refused", "reset", "timeout", "starting-up", "shutdown", "08006", "53300", "25006"],
)
def test_unavailable(error: Exception) -> None:
    wrapped = sa.exc.OperationalError("SELECT 1", {}, error)

    assert isinstance(unavailable(error), DatabaseUnavailableError)
    assert isinstance(unavailable(wrapped), DatabaseUnavailableError)


@pytest.mark.parametrize(
    "error",
    [
        ValueError("a bug"),
        _PGError("23505"),  # unique violation
        _PGError("42P01"),  # undefined table
        _PGError("40001"),  # serialization failure
        sa.exc.IntegrityError("INSERT", {}, Exception("duplicate")),
    ],
    ids=["bug", "unique", "no-table", "serialization", "integrity"],
)
def test_not_unavailable(error: Exception) -> None:
    assert unavailable(error) is None


def test_sqlite_locked_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        conn = sqlite3.connect(path, timeout=0.01)
        with pytest.raises(sqlite3.OperationalError) as locked:
            conn.execute("INSERT INTO t VALUES (1)")
        conn.close()
    finally:
        holder.close()

    error = unavailable(locked.value)

    assert error is not None
    assert "SQLITE_BUSY" in error.reason


def test_sqlite_schema_and_corruption_errors_are_bugs(tmp_path: Path) -> None:
    missing = _sqlite_error("SELECT * FROM no_such_table", tmp_path / "a.sqlite")
    garbage = tmp_path / "b.sqlite"
    garbage.write_bytes(b"this is not a database" * 100)

    assert unavailable(missing) is None
    assert unavailable(_sqlite_error("SELECT * FROM sqlite_master", garbage)) is None


async def test_a_cancelled_query_stays_cancelled(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    try:
        async with engine.connect() as conn:
            query = asyncio.ensure_future(
                conn.execute(
                    sa.text(
                        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                        "WHERE x < 3000000) SELECT count(*) FROM c"
                    )
                )
            )
            await asyncio.sleep(0.05)
            query.cancel()
            with pytest.raises(asyncio.CancelledError):
                await query
    finally:
        await engine.dispose()


class _Now:
    def __init__(self) -> None:
        self.value = 100.0

    def __call__(self) -> float:
        return self.value


def test_an_outage_is_logged_when_it_starts_and_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = _Now()
    outage = DatabaseOutage(quiet=1.0, now=now)
    caplog.set_level(logging.INFO, logger="bastion.stores.sql")
    error = DatabaseUnavailableError("database unavailable: ConnectionRefusedError")

    for _ in range(50):
        outage.failed(error)
        outage.refused()
    now.value += 0.5
    outage.answered()  # too soon after the last failure: a write lock may still hold
    now.value += 11.5
    outage.answered()
    outage.answered()

    assert [r.getMessage() for r in caplog.records] == [
        "database unavailable: ConnectionRefusedError; answering 503 until it answers again",
        "database recovered after 12 s, 50 requests refused",
    ]
    assert not outage.down
