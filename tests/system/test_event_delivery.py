"""The event queue of a real ``bastion serve`` process, stopped and killed mid-burst.

The test holds the event store's write lock (PostgreSQL: the chain's advisory lock;
SQLite: the database's write lock), so that a burst of refused requests piles up in
the service's event queue. The service's own metrics then say what is queued and what
was dropped; SIGTERM must write every queued event before the process exits, and
SIGKILL may lose at most the queue's size (docs/errors-and-events.md, "Delivery").
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from bastion.stores.sql import create_engine
from bastion.stores.sql.chain import CHAIN_LOCK
from tests.conftest import REDIS_URL
from tests.system.service import (
    START_TIMEOUT,
    Instance,
    delete_keys,
    ready,
    service_environment,
    spawn,
    stop,
    tail,
)

QUEUE_SIZE = 50
BATCH_SIZE = 10
BURST = 200  # refused requests, each one auth_failure event


@pytest.fixture
async def service(
    backend: str, database_url: str, redis_prefix: str, tmp_path: Path
) -> AsyncIterator[Instance]:
    env = service_environment()
    key_prefix = f"{redis_prefix}{secrets.token_hex(4)}:"
    env.update(
        {
            "BASTION_DATABASE_URL": database_url,
            "BASTION_DATA_DIR": str(tmp_path / "var"),
            "BASTION_PASSWORD_PROFILE": "test-only-insecure",
            "BASTION_LOG_EVENTS_TO_STDOUT": "false",
            "BASTION_EVENT_QUEUE_SIZE": str(QUEUE_SIZE),
            "BASTION_EVENT_BATCH_SIZE": str(BATCH_SIZE),
            # Only the refused tokens make events: no rate limit gets in the way.
            "BASTION_RATE_LIMITS": json.dumps({"ip": "10000/minute", "reads": "10000/minute"}),
            "PYTHONUNBUFFERED": "1",
        }
    )
    if backend == "postgres":
        env.update({"BASTION_REDIS_URL": REDIS_URL, "BASTION_REDIS_KEY_PREFIX": key_prefix})
    instance = await spawn(env, tmp_path, "service")
    try:
        async with httpx.AsyncClient(timeout=2.0) as client:
            deadline = asyncio.get_running_loop().time() + START_TIMEOUT
            if not await ready(client, instance, deadline):
                pytest.fail(f"the service exited:\n{tail(instance.log)}")
        yield instance
    finally:
        await stop(instance)
        await delete_keys(key_prefix)


@asynccontextmanager
async def store_write_lock(database_url: str) -> AsyncIterator[None]:
    """Hold what the service's event writer must take before it writes a batch."""
    if database_url.startswith("sqlite"):
        with sqlite_write_lock(database_url.split("///", 1)[1]):
            yield
        return
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn, conn.begin():
            await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(CHAIN_LOCK)))
            yield
    finally:
        await engine.dispose()


@contextmanager
def sqlite_write_lock(path: str) -> Iterator[None]:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


async def refuse_burst(instance: Instance) -> None:
    """``BURST`` requests with a forged token, all answered 401 while the store waits."""
    headers = {"Authorization": "Bearer not-a-token"}
    limits = httpx.Limits(max_connections=20)
    async with httpx.AsyncClient(base_url=instance.url, timeout=10, limits=limits) as client:
        answers = await asyncio.gather(
            *(client.get("/tasks", headers=headers) for _ in range(BURST))
        )
    assert {response.status_code for response in answers} == {401}


async def scrape(instance: Instance) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=instance.url, timeout=10) as client:
        text = (await client.get("/metrics")).text
    readings: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "bastion_security_events_total":
                # The burst's auth_failure events, and the alerts they raise.
                readings["sent"] = readings.get("sent", 0) + sample.value
            elif sample.name in ("bastion_event_queue_depth", "bastion_events_dropped_total"):
                readings[sample.name] = sample.value
    return readings


async def stored(database_url: str) -> list[dict[str, Any]]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(sa.text("SELECT event_type, extra FROM security_events"))
            return [dict(row._mapping) for row in rows]
    finally:
        await engine.dispose()


def extra_of(row: dict[str, Any]) -> dict[str, Any]:
    extra = row["extra"]
    return json.loads(extra) if isinstance(extra, str) else dict(extra)


async def test_sigterm_writes_every_queued_event_before_exiting(
    service: Instance, database_url: str
) -> None:
    async with store_write_lock(database_url):
        await refuse_burst(service)
        seen = await scrape(service)
        os.killpg(service.process.pid, signal.SIGTERM)
        await asyncio.sleep(1.0)
        # The process waits for its store rather than exiting with events unwritten.
        still_flushing = service.process.returncode is None
    code = await asyncio.wait_for(service.process.wait(), 30)

    rows = await stored(database_url)
    reports = [extra_of(r) for r in rows if r["event_type"] == "events_dropped"]
    kept = [r for r in rows if r["event_type"] != "events_dropped"]

    dropped = seen["bastion_events_dropped_total"]
    depth = seen["bastion_event_queue_depth"]
    assert seen["sent"] > BURST  # the refusals, and the alerts they raised
    # Full: the medium refusals fill nine tenths, the rest is kept for high alerts.
    assert QUEUE_SIZE * 0.9 <= depth <= QUEUE_SIZE
    assert dropped == seen["sent"] - depth
    assert still_flushing, tail(service.log)
    # uvicorn ends a graceful stop by raising the signal again (so -SIGTERM, not 0).
    assert code in (0, -signal.SIGTERM), tail(service.log)
    assert "Application shutdown complete" in service.log.read_text()
    # Every queued event was written; the drops are on record too, as one event.
    assert len(kept) == depth
    assert [(r["count"], r["reason"]) for r in reports] == [(dropped, "queue_full")]


async def test_sigkill_loses_at_most_the_queue_size(service: Instance, database_url: str) -> None:
    async with store_write_lock(database_url):
        await refuse_burst(service)
        seen = await scrape(service)
        await stop(service, first=signal.SIGKILL)

    kept = len(await stored(database_url))
    dropped = seen["bastion_events_dropped_total"]
    lost = seen["sent"] - dropped - kept

    # Every event was either written, counted as dropped while the service ran, or
    # queued when it died: and the queue is what the settings bound.
    assert seen["sent"] > BURST
    assert lost == seen["bastion_event_queue_depth"]
    assert 0 < lost <= QUEUE_SIZE
