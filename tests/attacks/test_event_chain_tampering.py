"""Someone with write access to the database, without the key file, hides events.

The real service stores its events (chained, with its head file in the data folder);
the attack then edits the database directly with SQL, and ``bastion events verify``
(run as an operator would, on the same settings) must exit 1 and say what it found.
Both backends (``backend``): SQLite + in-process stores, PostgreSQL + Redis.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner, Result

from bastion.stores.sql import create_engine
from bastion_cli import app as cli
from bastion_tasks.settings import TaskSettings
from tests.helpers import signed_up

runner = CliRunner()
FORGED = {"Authorization": "Bearer not-a-token"}


@pytest.fixture
def operator(
    settings: TaskSettings, monkeypatch: pytest.MonkeyPatch, clean_environment: None
) -> TaskSettings:
    """The environment ``bastion events verify`` runs in: the service's settings."""
    monkeypatch.setenv("BASTION_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("BASTION_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("BASTION_PASSWORD_PROFILE", "test-only-insecure")
    monkeypatch.setenv("COLUMNS", "200")
    return settings


@pytest.fixture
async def engine(settings: TaskSettings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings.database_url)
    yield engine
    await engine.dispose()


async def verify(*args: str) -> Result:
    return await asyncio.to_thread(lambda: runner.invoke(cli, ["events", "verify", *args]))


async def some_events(client: httpx.AsyncClient, app: Any, refused: int = 5) -> list[int]:
    """Events of a sign-up, a login and ``refused`` forged tokens, all stored."""
    await signed_up(client, "alice@example.com")
    for _ in range(refused):
        assert (await client.get("/tasks", headers=FORGED)).status_code == 401
    await app.state.security.drain()
    return await ids(app.state.security.stores.engine)


async def ids(engine: AsyncEngine) -> list[int]:
    async with engine.connect() as conn:
        rows = await conn.execute(sa.text("SELECT id FROM security_events ORDER BY id"))
        return list(rows.scalars())


async def execute(engine: AsyncEngine, statement: str, **params: Any) -> None:
    async with engine.begin() as conn:
        await conn.execute(sa.text(statement), params)


async def test_an_untouched_log_verifies(
    client: httpx.AsyncClient, app: Any, operator: TaskSettings
) -> None:
    rows = await some_events(client, app)

    result = await verify()

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == f"chain intact: {len(rows)} events"


async def test_stripping_the_chain_from_every_row_fails(
    client: httpx.AsyncClient, app: Any, operator: TaskSettings, engine: AsyncEngine
) -> None:
    rows = await some_events(client, app)
    await execute(engine, "DELETE FROM security_events WHERE id = :i", i=rows[2])
    await execute(engine, "UPDATE security_events SET chain_prev = NULL, chain_mac = NULL")

    result = await verify()

    assert result.exit_code == 1, result.output
    assert f"chain broken at row {rows[0]}: stripped" in result.stdout
    assert "chain intact" not in result.stdout


async def test_stripping_every_row_fails_without_the_head_file(
    client: httpx.AsyncClient, app: Any, operator: TaskSettings, engine: AsyncEngine
) -> None:
    rows = await some_events(client, app)
    await execute(engine, "UPDATE security_events SET chain_prev = NULL, chain_mac = NULL")
    for head in operator.data_dir.glob("event-chain-head*"):
        head.unlink()

    result = await verify()

    assert result.exit_code == 1, result.output
    assert f"chain broken at row {rows[0]}: stripped" in result.stdout


async def test_deleting_the_newest_rows_fails_against_the_head_file(
    client: httpx.AsyncClient, app: Any, operator: TaskSettings, engine: AsyncEngine
) -> None:
    rows = await some_events(client, app)
    await execute(engine, "DELETE FROM security_events WHERE id >= :i", i=rows[-3])

    result = await verify()

    assert result.exit_code == 1, result.output
    assert (
        f"chain truncated: the head file records {len(rows)} events, "
        f"the database holds {len(rows) - 3}" in result.stdout
    )


async def test_a_truncated_tail_stays_visible_after_the_service_writes_again(
    client: httpx.AsyncClient, app: Any, operator: TaskSettings, engine: AsyncEngine
) -> None:
    rows = await some_events(client, app)
    await execute(engine, "DELETE FROM security_events WHERE id >= :i", i=rows[-3])
    # The service goes on: its next events are chained onto the shortened log.
    for _ in range(2):
        assert (await client.get("/tasks", headers=FORGED)).status_code == 401
    await app.state.security.drain()

    result = await verify()

    assert result.exit_code == 1, result.output
    assert "chain truncated" in result.stdout
    assert "3 events before it are missing" in result.stdout


async def test_deleting_every_row_fails_against_the_head_file(
    client: httpx.AsyncClient, app: Any, operator: TaskSettings, engine: AsyncEngine
) -> None:
    rows = await some_events(client, app)
    await execute(engine, "DELETE FROM security_events")

    result = await verify()

    assert result.exit_code == 1, result.output
    assert (
        f"chain truncated: the head file records {len(rows)} events, the database holds 0"
        in result.stdout
    )


async def test_deleting_the_genesis_fails(
    client: httpx.AsyncClient, app: Any, operator: TaskSettings, engine: AsyncEngine
) -> None:
    rows = await some_events(client, app)
    await execute(engine, "DELETE FROM security_events WHERE id = :i", i=rows[0])

    result = await verify()

    assert result.exit_code == 1, result.output
    assert f"chain broken at row {rows[1]}: deleted" in result.stdout


async def test_the_head_in_the_stdout_log_catches_a_truncation_the_head_file_missed(
    client: httpx.AsyncClient,
    app: Any,
    operator: TaskSettings,
    engine: AsyncEngine,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = await some_events(client, app)
    await client.get("/tasks", headers=FORGED)  # one more line, carrying the head above
    await app.state.security.drain()
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # The attacker reaches the data folder too, but not the shipped log.
    await execute(engine, "DELETE FROM security_events WHERE id >= :i", i=rows[-3])
    for head in operator.data_dir.glob("event-chain-head*"):
        head.unlink()

    without = await verify()
    result = await verify("--head", f"{last['chain']['seq']}:{last['chain']['mac']}")

    assert without.exit_code == 0, without.output  # the chain alone cannot see it
    assert "no chain head" in without.output
    assert result.exit_code == 1, result.output
    assert f"chain truncated: the head given records {len(rows)} events" in result.stdout


def head_file(settings: TaskSettings) -> Path:
    return settings.data_dir / "event-chain-head.json"


async def test_the_head_file_is_private_and_names_the_newest_event(
    client: httpx.AsyncClient, app: Any, operator: TaskSettings
) -> None:
    rows = await some_events(client, app)

    head = json.loads(head_file(operator).read_text())

    assert head_file(operator).stat().st_mode & 0o777 == 0o600
    assert (head["seq"], head["id"]) == (len(rows), rows[-1])
    assert len(head["mac"]) == 64
