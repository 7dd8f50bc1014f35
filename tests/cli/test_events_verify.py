"""``bastion events verify`` on SQLite and PostgreSQL (``backend``).

Events are written by a chained store with the key the command derives from the
configured key file; the database is then edited directly with SQL. The command runs
in-process (CliRunner) in a worker thread, since it runs its own event loop.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from rich.console import Console
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner, Result

from bastion.config import BastionSettings
from bastion.stores.sql import SQLEventStore, create_engine
from bastion.tokens import ensure_key_file, save_key_file
from bastion.tokens.keys import KeySet
from bastion_cli import app
from bastion_cli.chain import chain_key, verify_events
from tests.unit.test_event_chain import (
    Tamper,
    delete_middle,
    edit_details,
    event,
    five_events,
    ids,
    insert_with_a_made_up_link,
    swap_contents,
)

runner = CliRunner()


@pytest.fixture
def env(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_environment: None
) -> BastionSettings:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BASTION_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("BASTION_DATABASE_URL", database_url)
    monkeypatch.setenv("BASTION_PASSWORD_PROFILE", "test-only-insecure")
    monkeypatch.setenv("COLUMNS", "200")
    return BastionSettings(_env_file=None)


@pytest.fixture
async def engine(env: BastionSettings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(env.database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def store(env: BastionSettings, engine: AsyncEngine) -> SQLEventStore:
    ensure_key_file(env.keys_path)
    return SQLEventStore(engine, chain_key=chain_key(env))


async def verify(*args: str) -> Result:
    return await asyncio.to_thread(lambda: runner.invoke(app, ["events", "verify", *args]))


async def test_an_intact_chain_exits_0(store: SQLEventStore) -> None:
    await five_events(store)

    result = await verify()

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "chain intact: 5 events"


async def test_rows_without_chain_values_exit_1_as_stripped(
    engine: AsyncEngine, store: SQLEventStore
) -> None:
    await SQLEventStore(engine).append([event(0), event(1)])
    await store.append([event(2)])
    first, *_ = await ids(engine)

    result = await verify()

    assert result.exit_code == 1, result.output
    assert f"chain broken at row {first}: stripped" in result.stdout


async def test_without_a_head_it_says_a_truncated_tail_cannot_be_found(
    store: SQLEventStore,
) -> None:
    await five_events(store)

    result = await verify()

    assert result.exit_code == 0, result.output
    assert "no chain head" in result.stderr


@pytest.mark.parametrize("head", ["5", "x:" + "ab" * 32, "5:" + "AB" * 32, "5:abc"])
async def test_a_malformed_head_exits_2(store: SQLEventStore, head: str) -> None:
    result = await verify("--head", head)

    assert result.exit_code == 2, result.output


async def test_a_gap_record_is_shown_with_what_was_lost(store: SQLEventStore) -> None:
    lost = {"auth_failure": 20, "alert_raised": 1}
    gap = event(
        5,
        event_type="events_dropped",
        extra={"count": 21, "reason": "queue_full", "types": lost, "first": "A", "last": "B"},
    )
    await five_events(store)
    await store.append([gap])
    row_id = (await ids(store.engine))[-1]

    result = await verify()

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"gap recorded at row {row_id}: 21 events not written (queue full) from A to B: "
        "auth_failure 20, alert_raised 1",
        "chain intact: 6 events",
    ]


@pytest.mark.parametrize(
    ("tamper", "at", "kind"),
    [
        (edit_details, 2, "modified"),
        (swap_contents, 1, "modified"),
        (delete_middle, 2, "deleted"),
        (insert_with_a_made_up_link, 5, "inserted"),
    ],
    ids=["edit", "swap", "delete", "insert"],
)
async def test_tampering_exits_1_naming_the_row_and_kind(
    store: SQLEventStore, tamper: Tamper, at: int, kind: str
) -> None:
    await tamper(store.engine, await five_events(store))
    row_id = (await ids(store.engine))[at]

    result = await verify()

    assert result.exit_code == 1, result.output
    assert f"chain broken at row {row_id}: {kind} (timestamp 2024-07-01T" in result.stdout


async def test_another_key_file_reports_the_first_row_modified(
    env: BastionSettings, store: SQLEventStore
) -> None:
    first, *_ = await five_events(store)
    save_key_file(env.keys_path, KeySet.generate())

    result = await verify()

    assert result.exit_code == 1, result.output
    assert f"chain broken at row {first}: modified" in result.stdout


async def test_without_the_key_file_nothing_is_verified(env: BastionSettings) -> None:
    result = await verify()

    assert result.exit_code == 2
    assert "key file" in result.output
    assert not env.keys_path.exists()


def test_an_in_memory_database_has_no_chain_to_verify(
    monkeypatch: pytest.MonkeyPatch, clean_environment: None, tmp_path: Path
) -> None:
    monkeypatch.setenv("BASTION_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("BASTION_DATABASE_URL", "memory://")

    result = runner.invoke(app, ["events", "verify"])

    assert result.exit_code == 2


async def test_a_large_log_shows_a_progress_bar(env: BastionSettings, store: SQLEventStore) -> None:
    await five_events(store)
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100)

    report = await verify_events(store.engine, chain_key(env), console, threshold=5)

    assert report.intact
    assert "verifying" in screen.getvalue()


# -- bastion events purge ---------------------------------------------------------------


async def aged_events(store: SQLEventStore, *days_ago: int) -> list[int]:
    now = datetime.now(UTC)
    await store.append(
        [event(n, timestamp=now - timedelta(days=d)) for n, d in enumerate(days_ago)]
    )
    return await ids(store.engine)


async def purge(*args: str, answer: str | None = None) -> Result:
    return await asyncio.to_thread(
        lambda: runner.invoke(app, ["events", "purge", *args], input=answer)
    )


async def test_purge_deletes_what_is_older_and_verify_starts_at_its_checkpoint(
    store: SQLEventStore,
) -> None:
    rows = await aged_events(store, 400, 380, 10, 1)

    purged = await purge("--yes")  # BASTION_EVENT_RETENTION_DAYS: 365
    checked = await verify()
    kept = await ids(store.engine)

    assert purged.exit_code == 0, purged.output
    assert purged.stdout.strip() == f"purged 2 events (through row {rows[1]}); checkpoint 1"
    assert kept[:2] == rows[2:]
    assert checked.exit_code == 0, checked.output
    lines = checked.stdout.splitlines()
    assert lines[0].startswith(f"from checkpoint 1: events through row {rows[1]} purged on ")
    assert lines[1] == "chain intact: 3 events"  # two kept and the purge's own


async def test_purge_takes_its_own_period(store: SQLEventStore) -> None:
    await aged_events(store, 40, 20, 1)

    result = await purge("--older-than", "30", "--yes")

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("purged 1 events")


async def test_purge_asks_first_and_a_no_keeps_everything(store: SQLEventStore) -> None:
    rows = await aged_events(store, 400, 1)

    result = await purge(answer="n\n")

    assert result.exit_code == 1
    assert "older than 365 days" in result.output
    assert await ids(store.engine) == rows


async def test_purge_with_nothing_old_changes_nothing(store: SQLEventStore) -> None:
    rows = await aged_events(store, 3, 1)

    result = await purge("--yes")

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("nothing to purge")
    assert await ids(store.engine) == rows


async def test_an_edited_checkpoint_fails_verification(
    store: SQLEventStore, engine: AsyncEngine
) -> None:
    await aged_events(store, 400, 1)
    await purge("--yes")
    async with engine.begin() as conn:
        await conn.execute(sa.text("UPDATE security_event_checkpoints SET purged = 0"))

    result = await verify()

    assert result.exit_code == 1, result.output
    assert "chain broken at checkpoint 1: checkpoint" in result.stdout


async def test_purge_without_the_key_file_deletes_nothing(env: BastionSettings) -> None:
    result = await purge("--yes")

    assert result.exit_code == 2
    assert "key file" in result.output


async def test_purge_refuses_a_chain_that_does_not_verify(store: SQLEventStore) -> None:
    rows = await aged_events(store, 400, 380, 1, 1)
    await edit_details(store.engine, rows)  # rows[2] edited

    result = await purge("--yes")

    assert result.exit_code == 1, result.output
    assert f"chain broken at row {rows[2]}: modified" in result.stdout
    assert "Refusing to purge" in result.output
    assert await ids(store.engine) == rows
