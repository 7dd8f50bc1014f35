"""``bastion migrate``: the task service's database (core and task tables), or with
``--core-only`` the database of an application using Bastion as a library; on SQLite and
PostgreSQL, run in-process with the real settings machinery."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

import bastion.migrate
from bastion_cli import app
from tests.migrations import TASK_TABLES, empty_databases, former_history, on, revisions, tables

runner = CliRunner()


@pytest.fixture
async def database(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_environment: None
) -> AsyncIterator[str]:
    """An empty database of the backend, as ``BASTION_DATABASE_URL``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BASTION_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("BASTION_PASSWORD_PROFILE", "test-only-insecure")
    monkeypatch.setenv("BASTION_LOG_EVENTS_TO_STDOUT", "false")
    monkeypatch.setenv("COLUMNS", "200")  # the help is not wrapped mid-sentence
    async with empty_databases(backend, tmp_path) as make:
        url = await make()
        monkeypatch.setenv("BASTION_DATABASE_URL", url)
        yield url


def _held(url: str, what: Any) -> Any:
    return asyncio.run(on(url, what))


def test_core_only_creates_the_core_tables_and_no_task_table(database: str) -> None:
    first = runner.invoke(app, ["migrate", "--core-only"])
    again = runner.invoke(app, ["migrate", "--core-only"])

    assert first.exit_code == 0, first.output
    assert again.exit_code == 0, again.output
    assert "up to date" in again.output
    assert _held(database, tables) == bastion.migrate.TABLES
    assert _held(database, revisions) == {bastion.migrate.HEAD}


def test_migrate_creates_the_core_and_the_task_tables(database: str) -> None:
    result = runner.invoke(app, ["migrate"])

    assert result.exit_code == 0, result.output
    assert _held(database, tables) == bastion.migrate.TABLES | TASK_TABLES


def test_migrate_moves_a_database_of_the_former_history_with_its_rows(database: str) -> None:
    async def former() -> None:
        await on(database, former_history, "0010")
        insert = "INSERT INTO token_denials VALUES ('kept', '2026-12-01 00:00:00')"
        await on(database, lambda c: c.execute(sa.text(insert)))

    asyncio.run(former())

    result = runner.invoke(app, ["migrate"])

    assert result.exit_code == 0, result.output
    kept = _held(database, lambda c: c.scalars(sa.text("SELECT token_id FROM token_denials")).all())
    assert kept == ["kept"]
    assert _held(database, revisions) == {"bastion_tasks_0001", bastion.migrate.HEAD}


def test_core_only_refuses_the_task_services_database_and_says_why(database: str) -> None:
    runner.invoke(app, ["migrate"])

    result = runner.invoke(app, ["migrate", "--core-only"])

    assert result.exit_code == 1
    assert "outside Bastion's core history" in " ".join(result.output.split())
    assert _held(database, revisions) == {"bastion_tasks_0001", bastion.migrate.HEAD}


def test_core_only_refuses_a_database_of_the_former_history(database: str) -> None:
    asyncio.run(on(database, former_history, "0010"))

    result = runner.invoke(app, ["migrate", "--core-only"])

    assert result.exit_code == 1
    assert "bastion migrate" in result.output
    assert _held(database, revisions) == {"0010"}


def test_the_help_says_core_only_is_for_a_library_users_database(database: str) -> None:
    result = runner.invoke(app, ["migrate", "--help"])

    assert result.exit_code == 0
    assert "--core-only" in result.output
    assert "library" in result.output
