"""Retention purges on SQLite and PostgreSQL (``backend``): the oldest events go, a
signed checkpoint stays, and the chain still verifies from it. Tampering with the
purge's record (deleting past it, editing, deleting or forging a checkpoint, putting a
purged row back) is reported, with SQL straight at the database.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bastion.events.chain import (
    GENESIS,
    ChainBrokenError,
    Checkpoint,
    checkpoint_mac,
    verify_chain,
)
from bastion.stores.sql import SQLEventStore
from bastion.stores.sql.tables import SecurityEventCheckpointRow, SecurityEventRow
from tests.unit.test_event_chain import KEY, T0, event, execute, ids, row
from tests.unit.test_event_chain import engine as engine  # the fixtures, shared
from tests.unit.test_event_chain import store as store

_checkpoints = SecurityEventCheckpointRow.__table__  # type: ignore[attr-defined]
_events = SecurityEventRow.__table__  # type: ignore[attr-defined]
NOW = T0 + timedelta(days=400)


async def ten_events(store: SQLEventStore) -> list[int]:
    """Events 0..9, one a minute from T0, in three appends."""
    await store.append([event(n) for n in range(4)])
    await store.append([event(n) for n in range(4, 7)])
    await store.append([event(n) for n in range(7, 10)])
    return await ids(store.engine)


async def types(engine: AsyncEngine) -> list[str]:
    return [(await row(engine, i))["event_type"] for i in await ids(engine)]


async def test_a_purge_keeps_the_newer_events_and_the_chain_verifies(
    store: SQLEventStore,
) -> None:
    rows = await ten_events(store)

    checkpoint = await store.purge(T0 + timedelta(minutes=6), now=NOW)
    report = await verify_chain(store, KEY)
    kept = await ids(store.engine)

    assert checkpoint is not None
    assert (checkpoint.through_id, checkpoint.purged) == (rows[5], 6)
    assert kept[:4] == rows[6:]
    assert report.intact, report.problem
    assert report.events == 5  # the four kept and the purge's own event
    assert report.checkpoint == checkpoint
    record = await row(store.engine, kept[-1])
    assert record["event_type"] == "events_purged"
    assert record["extra"] == {"purged": 6, "through_id": rows[5], "checkpoint": checkpoint.id}


async def test_the_chain_goes_on_after_a_purge(store: SQLEventStore) -> None:
    await ten_events(store)
    await store.purge(T0 + timedelta(minutes=3), now=NOW)
    await store.append([event(20), event(21)])
    second = await store.purge(T0 + timedelta(minutes=8), now=NOW + timedelta(days=1))
    await store.append([event(22)])

    report = await verify_chain(store, KEY)

    assert report.intact, report.problem
    assert report.checkpoint == second
    assert second is not None
    assert second.previous != GENESIS  # chained to the first checkpoint


async def test_purging_every_event_leaves_the_record_of_it(store: SQLEventStore) -> None:
    await ten_events(store)

    checkpoint = await store.purge(NOW, now=NOW)
    await store.append([event(30)])
    report = await verify_chain(store, KEY)

    assert checkpoint is not None
    assert checkpoint.purged == 10
    assert await types(store.engine) == ["events_purged", "auth_failure"]
    assert report.intact, report.problem


async def test_nothing_older_is_nothing_purged(store: SQLEventStore) -> None:
    rows = await ten_events(store)

    assert await store.purge(T0, now=NOW) is None
    assert await ids(store.engine) == rows


async def test_a_store_without_the_chain_key_does_not_purge(engine: AsyncEngine) -> None:
    with pytest.raises(RuntimeError, match="chain's key"):
        await SQLEventStore(engine).purge(NOW, now=NOW)


# -- tampering around a purge -----------------------------------------------------------


async def purged_twice(store: SQLEventStore) -> tuple[list[int], list[int]]:
    """Two purges of ten events; the kept rows and the checkpoints' ids."""
    await ten_events(store)
    await store.purge(T0 + timedelta(minutes=3), now=NOW)
    await store.purge(T0 + timedelta(minutes=5), now=NOW + timedelta(hours=1))
    kept = await ids(store.engine)
    async with store.engine.connect() as conn:
        marks = list((await conn.execute(_checkpoints.select().order_by("id"))).scalars())
    return kept, marks


async def test_deleting_past_the_checkpoint_is_reported(store: SQLEventStore) -> None:
    kept, _ = await purged_twice(store)
    await execute(store.engine, "DELETE FROM security_events WHERE id = :i", i=kept[0])

    report = await verify_chain(store, KEY)

    assert report.problem is not None
    assert (report.problem.row_id, report.problem.kind) == (kept[1], "deleted")


async def test_deleting_the_newest_checkpoint_is_reported(store: SQLEventStore) -> None:
    kept, marks = await purged_twice(store)
    await execute(store.engine, "DELETE FROM security_event_checkpoints WHERE id = :i", i=marks[1])

    report = await verify_chain(store, KEY)

    assert report.problem is not None
    assert (report.problem.row_id, report.problem.kind) == (kept[0], "deleted")


async def test_deleting_every_checkpoint_is_reported(store: SQLEventStore) -> None:
    kept, _ = await purged_twice(store)
    await execute(store.engine, "DELETE FROM security_event_checkpoints")

    report = await verify_chain(store, KEY)

    assert report.problem is not None
    assert (report.problem.row_id, report.problem.kind) == (kept[0], "deleted")


async def test_editing_a_checkpoint_is_reported(store: SQLEventStore) -> None:
    _, marks = await purged_twice(store)
    await execute(
        store.engine, "UPDATE security_event_checkpoints SET purged = 1 WHERE id = :i", i=marks[0]
    )

    report = await verify_chain(store, KEY)

    assert report.problem is not None
    assert (report.problem.row_id, report.problem.kind) == (marks[0], "checkpoint")
    assert "MAC" in report.problem.reason


async def test_deleting_an_older_checkpoint_is_reported(store: SQLEventStore) -> None:
    _, marks = await purged_twice(store)
    await execute(store.engine, "DELETE FROM security_event_checkpoints WHERE id = :i", i=marks[0])

    report = await verify_chain(store, KEY)

    assert report.problem is not None
    assert (report.problem.row_id, report.problem.kind) == (marks[1], "checkpoint")


async def test_a_checkpoint_forged_to_hide_a_deletion_is_reported(
    store: SQLEventStore,
) -> None:
    # Rows deleted by hand, and a checkpoint that says so, MACed with a guessed key.
    rows = await ten_events(store)
    await execute(store.engine, "DELETE FROM security_events WHERE id <= :i", i=rows[2])
    prev = (await row(store.engine, rows[3]))["chain_prev"]
    forged = Checkpoint(NOW, T0, rows[2], 3, prev, GENESIS)
    forged = dataclasses.replace(forged, mac=checkpoint_mac(bytes(32), forged))
    values = {k: v for k, v in dataclasses.asdict(forged).items() if k != "id"}
    await execute(store.engine, _checkpoints.insert().values(**values))

    report = await verify_chain(store, KEY)

    assert report.problem is not None
    assert report.problem.kind == "checkpoint"


async def test_a_purged_row_put_back_is_reported(store: SQLEventStore) -> None:
    rows = await ten_events(store)
    old = await row(store.engine, rows[0])
    await store.purge(T0 + timedelta(minutes=2), now=NOW)
    await execute(store.engine, _events.insert().values(**old))

    report = await verify_chain(store, KEY)

    assert report.problem is not None
    assert (report.problem.row_id, report.problem.kind) == (rows[0], "inserted")


# -- a purge does not sign over tampering ----------------------------------------------


async def test_a_purge_refuses_to_sign_a_copied_mac(store: SQLEventStore) -> None:
    # Recent rows deleted and the last one's MAC copied onto the row before them: the
    # chain is broken there, and a purge through that row would make it look whole.
    rows = await ten_events(store)
    copied = (await row(store.engine, rows[6]))["chain_mac"]
    await execute(
        store.engine, "DELETE FROM security_events WHERE id BETWEEN :a AND :b", a=rows[3], b=rows[6]
    )
    await execute(
        store.engine, "UPDATE security_events SET chain_mac = :m WHERE id = :i", m=copied, i=rows[2]
    )

    with pytest.raises(ChainBrokenError) as refused:
        await store.purge(T0 + timedelta(minutes=3), now=NOW)

    assert refused.value.row_id == rows[2]
    assert len(await ids(store.engine)) == 6  # nothing purged, no checkpoint
    report = await verify_chain(store, KEY)
    assert report.checkpoint is None
    assert report.problem is not None


async def test_a_purge_refuses_rows_whose_time_was_moved_back(store: SQLEventStore) -> None:
    # Recent rows backdated so that the purge would take them away with the old ones.
    rows = await ten_events(store)
    await execute(
        store.engine,
        "UPDATE security_events SET timestamp = :t WHERE id BETWEEN :a AND :b",
        t=T0,
        a=rows[3],
        b=rows[6],
    )

    with pytest.raises(ChainBrokenError):
        await store.purge(T0 + timedelta(minutes=3), now=NOW)

    assert await ids(store.engine) == rows
