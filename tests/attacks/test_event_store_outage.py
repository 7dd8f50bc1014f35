"""Security events written while the database is unavailable are not lost without a trace.

A real outage, not a mock: PostgreSQL is reached through a TCP proxy the test cuts (the
shared server keeps running); SQLite's write lock is held by another connection while
the store's busy timeout is short, so every write fails with "database is locked".
Events wait in the bounded queue and are stored, chained, when the database is back;
what the bound drops leaves a chained ``events_dropped`` record (how many, which types,
from when to when) that ``verify_chain`` and the events API show.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bastion.events import EventLog, StoreSink
from bastion.events.chain import verify_chain
from bastion.stores import EventQuery
from bastion.stores.sql import SQLEventStore, create_engine
from tests.conftest import AppMaker
from tests.helpers import user
from tests.tcp_proxy import TCPProxy

KEY = bytes(range(32))
FORGED = {"Authorization": "Bearer not-a-token"}
Cut = Callable[[], AbstractAsyncContextManager[None]]


@dataclass
class Outage:
    """``url`` reaches the backend's database; inside ``cut()`` it does not answer."""

    url: str
    cut: Cut


@pytest.fixture
async def outage(backend: str, database_url: str) -> AsyncIterator[Outage]:
    if backend == "postgres":
        url = sa.make_url(database_url)
        proxy = TCPProxy(url.host or "127.0.0.1", url.port or 5432)
        await proxy.start()

        @asynccontextmanager
        async def cut() -> AsyncIterator[None]:
            await proxy.cut()
            try:
                yield
            finally:
                await proxy.restore()

        try:
            proxied = url.set(host="127.0.0.1", port=proxy.port)
            yield Outage(proxied.render_as_string(hide_password=False), cut)
        finally:
            await proxy.aclose()
        return

    @asynccontextmanager
    async def locked() -> AsyncIterator[None]:
        holder = sqlite3.connect(database_url.split("///", 1)[1], isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()

    # A busy timeout of 50 ms: each write fails "database is locked" while it is held.
    yield Outage(f"{database_url}?timeout=0.05", locked)


@pytest.fixture
async def engine(outage: Outage) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(outage.url)
    yield engine
    await engine.dispose()


def event_log(engine: AsyncEngine, queue_size: int = 1000) -> EventLog:
    # Quick retries: the old schedule gave up after these and dropped the batch.
    return EventLog(
        [StoreSink(SQLEventStore(engine, chain_key=KEY))],
        queue_size=queue_size,
        retry_delays=(0.05, 0.1, 0.2),
    )


async def stored(engine: AsyncEngine) -> list[tuple[str, str]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.text("SELECT event_type, details FROM security_events ORDER BY id")
        )
        return [(row.event_type, row.details) for row in rows]


async def during(cut: Cut, seconds: float, work: Callable[[], Awaitable[None]]) -> None:
    async with cut():
        await work()
        await asyncio.sleep(seconds)  # longer than every retry of the old schedule


async def test_events_of_an_outage_are_stored_when_the_database_returns(
    outage: Outage, engine: AsyncEngine
) -> None:
    log = event_log(engine)
    log.emit_soon("permission_denied", details="before")
    await log.drain()

    async def burst() -> None:
        for n in range(26):
            log.emit_soon("auth_failure", details=f"refused {n}")
        log.emit_soon("alert_raised", details="the alert")

    await during(outage.cut, 1.5, burst)
    waiting = log.pending
    await asyncio.wait_for(log.drain(), 30)
    kept = await stored(engine)
    report = await verify_chain(engine, KEY)

    assert waiting == 27
    assert kept == [
        ("permission_denied", "before"),
        *[("auth_failure", f"refused {n}") for n in range(26)],
        ("alert_raised", "the alert"),
    ]
    assert (log.failed, log.dropped) == (0, 0)
    assert report.intact
    assert report.events == 28


async def test_what_the_bound_drops_leaves_a_chained_gap_record(
    outage: Outage, engine: AsyncEngine
) -> None:
    store = SQLEventStore(engine, chain_key=KEY)
    log = event_log(engine, queue_size=10)

    async def flood() -> None:
        for n in range(30):
            log.emit_soon("auth_failure", details=f"refused {n}")  # medium: 9 are kept
        log.emit_soon("alert_raised", details="the alert")  # high: the last place

    await during(outage.cut, 1.0, flood)
    await asyncio.wait_for(log.drain(), 30)
    kept = await stored(engine)
    (gap,) = await store.query(EventQuery(event_type="events_dropped", limit=10))
    report = await verify_chain(engine, KEY)

    assert kept[:10] == [
        *[("auth_failure", f"refused {n}") for n in range(9)],
        ("alert_raised", "the alert"),
    ]
    assert len(kept) == 11
    assert gap.severity == "high"
    assert gap.extra["count"] == 21
    assert gap.extra["reason"] == "queue_full"
    assert gap.extra["types"] == {"auth_failure": 21}
    assert gap.extra["first"] <= gap.extra["last"]
    assert report.intact
    assert [(g.row_id, g.count) for g in report.gaps] == [(gap.id, 21)]


async def test_the_events_api_shows_the_gap_of_an_outage(outage: Outage, make: AppMaker) -> None:
    app = await make.app(database_url=outage.url, event_queue_size=10)
    client = await make.client(app)
    admin = await user(client, app, "admin@example.com", "admin")
    await app.state.security.drain()

    async def refused() -> None:
        for _ in range(30):
            assert (await client.get("/tasks", headers=FORGED)).status_code == 401

    await during(outage.cut, 1.0, refused)
    await asyncio.wait_for(app.state.security.drain(), 30)
    response = await client.get(
        "/admin/security/events", params={"event_type": "events_dropped"}, headers=admin["auth"]
    )
    stored = await client.get(
        "/admin/security/events",
        params={"event_type": "auth_failure", "limit": 100},
        headers=admin["auth"],
    )

    assert response.status_code == 200, response.text
    (gap,) = response.json()["items"]
    kept = len(stored.json()["items"])
    assert gap["reason"] == "queue_full"
    assert gap["types"]["auth_failure"] == 30 - kept
    assert gap["count"] == sum(gap["types"].values())
    assert gap["first"] <= gap["last"]
