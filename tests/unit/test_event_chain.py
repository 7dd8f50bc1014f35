"""The tamper-evident event chain on SQLite and PostgreSQL (``backend``).

Events are written by the SQL stores with a chain key; every attack edits the database
directly with SQL, as someone with database access but without the key file would, and
``verify_chain`` must name the first row touched and how.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bastion.events import EventLog, StoreSink
from bastion.events.chain import GENESIS, ChainHead, ChainReport, read_head, verify_chain
from bastion.stores import AccountChange, SecurityEvent, open_stores
from bastion.stores.sql import EventChain, SQLEventStore, create_engine
from bastion.stores.sql.tables import SecurityEventRow
from bastion.tokens import purposes
from tests.contract.support import make_account
from tests.helpers import signed_up

KEY = bytes(range(32))
T0 = datetime(2024, 7, 1, 8, 0, 0, 123456, tzinfo=UTC)
_table = SecurityEventRow.__table__  # type: ignore[attr-defined]
_CONTENT = [
    "timestamp",
    "event_type",
    "severity",
    "user_id",
    "ip_address",
    "endpoint",
    "method",
    "details",
    "request_id",
    "extra",
]


def event(n: int, **overrides: Any) -> SecurityEvent:
    values: dict[str, Any] = {
        "event_type": "auth_failure",
        "timestamp": T0 + timedelta(minutes=n),
        "severity": "medium",
        "user_id": f"user-{n}",
        "ip_address": "192.0.2.1",
        "endpoint": "/auth/login",
        "method": "POST",
        "details": f"event {n}",
        "request_id": f"req-{n}",
        "extra": {"attempt": n, "category": "credential"},
    }
    values.update(overrides)
    return SecurityEvent(**values)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def store(engine: AsyncEngine) -> SQLEventStore:
    return SQLEventStore(engine, chain_key=KEY)


async def ids(engine: AsyncEngine) -> list[int]:
    async with engine.connect() as conn:
        return list(
            (await conn.execute(sa.text("SELECT id FROM security_events ORDER BY id"))).scalars()
        )


async def row(engine: AsyncEngine, row_id: int) -> dict[str, Any]:
    async with engine.connect() as conn:
        found = (await conn.execute(_table.select().where(_table.c.id == row_id))).one()
    return dict(found._mapping)


async def execute(engine: AsyncEngine, statement: Any, **params: Any) -> None:
    async with engine.begin() as conn:
        await conn.execute(sa.text(statement) if isinstance(statement, str) else statement, params)


async def five_events(store: SQLEventStore) -> list[int]:
    await store.append([event(0), event(1)])
    await store.append([event(2)])
    await store.append([event(3), event(4)])
    return await ids(store.engine)


# -- what an intact chain is ------------------------------------------------------------


async def test_an_untouched_chain_verifies(store: SQLEventStore) -> None:
    await five_events(store)

    report = await verify_chain(store, KEY)

    assert report == ChainReport(events=5, problem=None)
    assert report.intact


async def test_each_event_links_to_the_previous_one(store: SQLEventStore) -> None:
    first, second, *_ = await five_events(store)

    one, two = await row(store.engine, first), await row(store.engine, second)

    assert one["chain_prev"] == GENESIS
    assert two["chain_prev"] == one["chain_mac"]
    assert len(two["chain_mac"]) == 64


async def test_an_empty_log_verifies(store: SQLEventStore) -> None:
    report = await verify_chain(store.engine, KEY)

    assert report == ChainReport(events=0)


async def test_rows_without_chain_values_at_the_start_are_reported_as_stripped(
    engine: AsyncEngine, store: SQLEventStore
) -> None:
    # Every event a store writes is chained: rows without chain values at the start are
    # rows whose values were removed (or that were written without the key).
    await SQLEventStore(engine).append([event(0), event(1)])
    await store.append([event(2), event(3), event(4)])
    first, *_ = await ids(engine)

    report = await verify_chain(engine, KEY)

    assert report.problem is not None
    assert (report.problem.row_id, report.problem.kind) == (first, "stripped")


async def test_a_store_without_a_key_writes_no_chain(engine: AsyncEngine) -> None:
    await SQLEventStore(engine).append([event(0)])

    (only,) = await ids(engine)
    stored = await row(engine, only)

    assert (stored["chain_prev"], stored["chain_mac"]) == (None, None)


async def test_a_log_read_in_small_batches_reports_its_progress(store: SQLEventStore) -> None:
    await five_events(store)
    calls: list[tuple[int, int]] = []

    report = await verify_chain(store, KEY, batch=2, on_progress=lambda *a: calls.append(a))

    assert report.events == 5
    assert calls == [(2, 5), (4, 5), (5, 5)]


async def test_events_of_account_changes_are_chained_with_the_others(database_url: str) -> None:
    stores = open_stores(database_url, event_chain_key=KEY)
    account = make_account("owner@example.com")
    await stores.accounts.add(account)
    await stores.events.append([event(0)])
    await stores.accounts.change(
        account.id,
        AccountChange(role="admin"),
        now=T0,
        events=lambda before, after: [event(1, event_type="role_changed")],
    )
    await stores.events.append([event(2)])
    assert stores.engine is not None

    report = await verify_chain(stores.engine, KEY)
    await stores.aclose()

    assert report == ChainReport(events=3)


async def test_concurrent_writers_do_not_fork_the_chain(database_url: str) -> None:
    engines = [create_engine(database_url) for _ in range(2)]
    writers = [SQLEventStore(e, chain_key=KEY) for e in engines]

    await asyncio.gather(*(writers[n % 2].append([event(n), event(n + 100)]) for n in range(20)))
    report = await verify_chain(engines[0], KEY)
    for engine in engines:
        await engine.dispose()

    assert report == ChainReport(events=40)


async def test_a_queued_burst_is_stored_in_batches_and_chained(
    store: SQLEventStore, engine: AsyncEngine
) -> None:
    log = EventLog([StoreSink(store)], batch_size=100)

    for n in range(250):
        log.emit_soon("permission_denied", details=f"burst {n}")
    # Meanwhile, an event written with its change goes between two batches.
    await store.append([event(0)])
    await log.drain()
    report = await verify_chain(engine, KEY)
    async with engine.connect() as conn:
        stored = (
            await conn.execute(
                sa.select(_table.c.details)
                .where(_table.c.event_type == "permission_denied")
                .order_by(_table.c.id)
            )
        ).scalars()
        kept = list(stored)

    assert kept == [f"burst {n}" for n in range(250)]
    assert report == ChainReport(events=251)


async def test_the_service_chains_the_events_it_stores(client: httpx.AsyncClient, app: Any) -> None:
    await signed_up(client, "alice@example.com")
    security = app.state.security
    await security.drain()

    report = await verify_chain(
        security.stores.engine, security.keys.derive_secret(purposes.EVENT_CHAIN)
    )

    assert report.intact
    assert report.events >= 2


# -- attacks: direct edits of the database ----------------------------------------------

Tamper = Callable[[AsyncEngine, list[int]], Awaitable[None]]


async def edit_details(engine: AsyncEngine, rows: list[int]) -> None:
    await execute(engine, "UPDATE security_events SET details = 'nothing' WHERE id = :i", i=rows[2])


async def edit_user(engine: AsyncEngine, rows: list[int]) -> None:
    await execute(engine, "UPDATE security_events SET user_id = 'other' WHERE id = :i", i=rows[2])


async def edit_severity(engine: AsyncEngine, rows: list[int]) -> None:
    await execute(engine, "UPDATE security_events SET severity = 'info' WHERE id = :i", i=rows[2])


async def edit_extra(engine: AsyncEngine, rows: list[int]) -> None:
    await execute(engine, _table.update().where(_table.c.id == rows[2]).values(extra={}))


async def edit_time(engine: AsyncEngine, rows: list[int]) -> None:
    moved = _table.update().where(_table.c.id == rows[2]).values(timestamp=T0)
    await execute(engine, moved)


async def edit_link(engine: AsyncEngine, rows: list[int]) -> None:
    await execute(
        engine, "UPDATE security_events SET chain_prev = :g WHERE id = :i", g=GENESIS, i=rows[2]
    )


async def swap_contents(engine: AsyncEngine, rows: list[int]) -> None:
    first, second = await row(engine, rows[1]), await row(engine, rows[3])
    for target, source in ((rows[1], second), (rows[3], first)):
        content = {name: source[name] for name in _CONTENT}
        await execute(engine, _table.update().where(_table.c.id == target).values(**content))


async def delete_middle(engine: AsyncEngine, rows: list[int]) -> None:
    await execute(engine, "DELETE FROM security_events WHERE id = :i", i=rows[2])


async def delete_first(engine: AsyncEngine, rows: list[int]) -> None:
    await execute(engine, "DELETE FROM security_events WHERE id = :i", i=rows[0])


async def forge(engine: AsyncEngine, prev: str | None, mac: str | None) -> None:
    values = {"event_type": "auth_success", "timestamp": T0 + timedelta(hours=1)}
    forged = event(99, **values)
    row = {name: getattr(forged, name) for name in _CONTENT}
    await execute(engine, _table.insert().values(**row, chain_prev=prev, chain_mac=mac))


async def insert_unchained(engine: AsyncEngine, rows: list[int]) -> None:
    await forge(engine, None, None)


async def insert_with_a_made_up_link(engine: AsyncEngine, rows: list[int]) -> None:
    await forge(engine, "ab" * 32, "cd" * 32)


async def insert_with_a_copied_link(engine: AsyncEngine, rows: list[int]) -> None:
    last = await row(engine, rows[-1])
    await forge(engine, last["chain_mac"], last["chain_mac"])


TAMPERING: list[tuple[Tamper, int, str]] = [
    (edit_details, 2, "modified"),
    (edit_user, 2, "modified"),
    (edit_severity, 2, "modified"),
    (edit_extra, 2, "modified"),
    (edit_time, 2, "modified"),
    (edit_link, 2, "modified"),
    (swap_contents, 1, "modified"),
    (delete_middle, 2, "deleted"),  # reported at the row after the gap
    (delete_first, 0, "deleted"),
    (insert_unchained, 5, "inserted"),
    (insert_with_a_made_up_link, 5, "inserted"),
    # Appended after the last row with a copied link: the chain cannot tell this from an
    # edit of a last row, but it never verifies.
    (insert_with_a_copied_link, 5, "modified"),
]
TAMPERING_IDS = [t[0].__name__ for t in TAMPERING]


@pytest.mark.parametrize(("tamper", "at", "kind"), TAMPERING, ids=TAMPERING_IDS)
async def test_tampering_is_reported_at_the_first_row_touched(
    store: SQLEventStore, tamper: Tamper, at: int, kind: str
) -> None:
    rows = await five_events(store)
    await tamper(store.engine, rows)
    rows_now = await ids(store.engine)

    report = await verify_chain(store, KEY)

    assert report.problem is not None
    assert (report.problem.row_id, report.problem.kind) == (rows_now[at], kind)


async def test_a_forged_row_between_two_linked_rows_is_reported_as_inserted(
    engine: AsyncEngine, store: SQLEventStore
) -> None:
    # A free id between two chained rows (PostgreSQL sequences leave such gaps after a
    # rollback): made here by a keyless row, deleted once the next chained row is in.
    await store.append([event(0)])
    await SQLEventStore(engine).append([event(1)])
    await store.append([event(2)])
    first, gap, _ = await ids(engine)
    await execute(engine, "DELETE FROM security_events WHERE id = :i", i=gap)
    copied = (await row(engine, first))["chain_mac"]
    forged = {name: getattr(event(1), name) for name in _CONTENT}
    await execute(
        engine, _table.insert().values(id=gap, **forged, chain_prev=copied, chain_mac="ef" * 32)
    )

    report = await verify_chain(engine, KEY)

    assert report.problem is not None
    assert (report.problem.row_id, report.problem.kind) == (gap, "inserted")


async def test_a_wrong_key_reports_the_first_row_modified(store: SQLEventStore) -> None:
    rows = await five_events(store)

    report = await verify_chain(store, bytes(32))

    assert report.problem is not None
    assert (report.problem.row_id, report.problem.kind) == (rows[0], "modified")
    assert report.events == 0


async def test_deleting_the_last_rows_is_not_visible_to_the_chain(store: SQLEventStore) -> None:
    rows = await five_events(store)
    await execute(store.engine, "DELETE FROM security_events WHERE id >= :i", i=rows[3])

    report = await verify_chain(store, KEY)

    assert report == ChainReport(events=3)


# -- the head published outside the database --------------------------------------------


@pytest.fixture
def head_file(tmp_path: Path) -> Path:
    return tmp_path / "head" / "event-chain-head.json"


@pytest.fixture
def headed(engine: AsyncEngine, head_file: Path) -> SQLEventStore:
    return SQLEventStore(engine, chain=EventChain(KEY, head_file=head_file))


async def test_each_write_publishes_the_newest_event_s_number_and_mac(
    headed: SQLEventStore, head_file: Path
) -> None:
    rows = await five_events(headed)
    last = await row(headed.engine, rows[-1])

    assert read_head(head_file) == ChainHead(5, last["chain_mac"], rows[-1])
    assert headed.chain_head == read_head(head_file)
    assert mode(head_file) == 0o600


async def test_the_head_verifies_an_untouched_log(headed: SQLEventStore, head_file: Path) -> None:
    await five_events(headed)

    report = await verify_chain(headed, KEY, head=read_head(head_file))

    assert report.intact
    assert report.events == 5


async def test_the_head_finds_the_newest_rows_deleted(
    headed: SQLEventStore, head_file: Path
) -> None:
    rows = await five_events(headed)
    await execute(headed.engine, "DELETE FROM security_events WHERE id >= :i", i=rows[3])

    report = await verify_chain(headed, KEY, head=read_head(head_file))

    assert report.problem is not None
    assert (report.problem.row_id, report.problem.kind) == (rows[2], "truncated")
    assert "records 5 events, the database holds 3" in report.problem.reason


async def test_a_new_process_numbers_on_from_the_head_file(
    engine: AsyncEngine, headed: SQLEventStore, head_file: Path
) -> None:
    rows = await five_events(headed)
    await execute(engine, "DELETE FROM security_events WHERE id >= :i", i=rows[3])
    restarted = SQLEventStore(engine, chain=EventChain(KEY, head_file=head_file))
    await restarted.append([event(5)])

    head = read_head(head_file)
    report = await verify_chain(engine, KEY, head=head)

    assert head is not None
    assert head.seq == 6  # not 4: the two deleted events keep their numbers
    assert report.problem is not None
    assert report.problem.kind == "truncated"
    assert "2 events before it are missing" in report.problem.reason


async def test_a_head_from_before_a_purge_still_verifies(
    headed: SQLEventStore, head_file: Path
) -> None:
    now = datetime.now(UTC)
    aged = [event(n, timestamp=now - timedelta(days=d)) for n, d in enumerate((400, 300, 1))]
    await headed.append(aged)
    before_purge = read_head(head_file)
    await headed.purge(now - timedelta(days=365), now=now)

    old = await verify_chain(headed, KEY, head=before_purge)
    new = await verify_chain(headed, KEY, head=read_head(head_file))

    newest = await last_row(headed.engine)

    assert old.intact, old.problem
    assert new.intact, new.problem
    # Two purged, one kept and the purge's own record: the fourth event of the log.
    assert read_head(head_file) == ChainHead(4, newest["chain_mac"], newest["id"])


async def last_row(engine: AsyncEngine) -> dict[str, Any]:
    return await row(engine, (await ids(engine))[-1])


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_a_head_file_that_is_not_a_head_is_refused(head_file: Path) -> None:
    head_file.parent.mkdir(parents=True)
    head_file.write_text('{"seq": "many"}')

    with pytest.raises(ValueError, match="not an event chain head"):
        read_head(head_file)
