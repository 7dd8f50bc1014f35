"""Migrations: the core's own history, the task service's on top of it in the same version
table, a host application's history on top of the core's, and databases made by the former
single history (revisions 0001 to 0010) moved onto the current ones with every row kept."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.util import CommandError
from asgi_lifespan import LifespanManager
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import bastion.migrate
import bastion_tasks.migrate
import bastion_tasks.models
from bastion.passwords import TEST_ONLY_INSECURE, PasswordHasher
from bastion_tasks import create_app
from tests.conftest import make_settings
from tests.helpers import STRONG_PASSWORD, login
from tests.migrations import (
    TASK_TABLES,
    Database,
    empty_databases,
    former_history,
    migrate_with,
    on,
    revisions,
    tables,
)

assert bastion_tasks.models  # the task tables are in SQLModel.metadata


@pytest.fixture
async def new_database(backend: str, tmp_path: Path) -> AsyncIterator[Database]:
    async with empty_databases(backend, tmp_path) as make:
        yield make


def _schema(connection: Connection) -> dict[str, Any]:
    """Everything a migration decides about each table, as the database reports it."""
    inspector = sa.inspect(connection)
    schema: dict[str, Any] = {}
    for table in sorted(tables(connection)):
        schema[table] = {
            "columns": [
                (c["name"], repr(c["type"]), c["nullable"], c.get("default"))
                for c in inspector.get_columns(table)
            ],
            "primary key": inspector.get_pk_constraint(table),
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                for i in inspector.get_indexes(table)
            ),
            "uniques": sorted(
                (u["name"] or "", tuple(u["column_names"]))
                for u in inspector.get_unique_constraints(table)
            ),
            "foreign keys": sorted(
                (
                    f["name"] or "",
                    tuple(f["constrained_columns"]),
                    f["referred_table"],
                    tuple(f["referred_columns"]),
                    f["options"].get("ondelete"),
                )
                for f in inspector.get_foreign_keys(table)
            ),
        }
    if connection.dialect.name == "postgresql":
        rows = connection.execute(
            sa.text("SELECT sequence_name, data_type FROM information_schema.sequences")
        )
        schema["sequences"] = sorted(tuple(row) for row in rows)
    return schema


def _stored(connection: Connection, name: str) -> sa.Table:
    """The model's table restricted to the columns the database has (an older revision
    may lack some), so that rows are written and read with the models' types."""
    stored = {c["name"] for c in sa.inspect(connection).get_columns(name)}
    model = SQLModel.metadata.tables[name]
    return sa.Table(name, sa.MetaData(), *(c._copy() for c in model.columns if c.name in stored))


def _write(connection: Connection, rows: dict[str, list[dict[str, Any]]]) -> None:
    for model in SQLModel.metadata.sorted_tables:  # parents before children
        if model.name in rows:
            table = _stored(connection, model.name)
            values = [{k: v for k, v in row.items() if k in table.c} for row in rows[model.name]]
            connection.execute(table.insert(), values)


def _read(connection: Connection) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, in primary-key order."""
    read = {}
    for name in sorted(tables(connection)):
        table = _stored(connection, name)
        query = sa.select(table).order_by(*table.primary_key.columns)
        read[name] = [dict(row) for row in connection.execute(query).mappings()]
    return read


NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
OWNER = UUID("0b7a3a52-0000-4000-8000-000000000001")
RESERVED = UUID("0b7a3a52-0000-4000-8000-000000000002")
SESSION = UUID("0b7a3a52-0000-4000-8000-000000000003")
TASK = UUID("0b7a3a52-0000-4000-8000-000000000004")


def _rows(password_hash: str) -> dict[str, list[dict[str, Any]]]:
    """A row in every table of the former history at 0010, every column set."""
    at = {"created_at": NOW}
    return {
        "accounts": [
            {
                "id": OWNER,
                "email": "Old@Example.com",
                "email_key": "old@example.com",
                "display_name": "Old Timer",
                "password_hash": password_hash,
                "role": "member",
                "is_active": True,
                "email_verified": True,
                "mfa_enabled": False,
                "token_version": 3,
                "locked_at": None,
                "updated_at": NOW,
                **at,
            }
        ],
        "account_reservations": [{"email_key": "later@example.com", "id": RESERVED, **at}],
        "auth_sessions": [
            {
                "id": SESSION,
                "user_id": OWNER,
                "last_used_at": NOW,
                "absolute_expires_at": NOW + timedelta(days=30),
                "ip_address": "198.51.100.4",
                "user_agent": "curl/8.5",
                "revoked_at": NOW + timedelta(hours=1),
                "revoked_reason": "logout",
                **at,
            }
        ],
        "refresh_tokens": [
            {"digest": "d" * 64, "session_id": SESSION, "used_at": NOW, **at},
        ],
        "token_denials": [{"token_id": "jti-of-a-revoked-token", "expires_at": NOW}],
        "one_time_tokens": [
            {
                "selector": "s" * 32,
                "digest": "e" * 64,
                "purpose": "verify_email",
                "user_id": OWNER,
                "state": "f" * 64,
                "expires_at": NOW + timedelta(days=1),
                "used_at": None,
                **at,
            }
        ],
        "security_events": [
            {
                "timestamp": NOW,
                "event_type": "auth.login.success",
                "severity": "info",
                "user_id": str(OWNER),
                "ip_address": "198.51.100.4",
                "endpoint": "/auth/login",
                "method": "POST",
                "details": "old event",
                "request_id": "req-1",
                "extra": {"kept": True},
                "chain_prev": "0" * 64,
                "chain_mac": "1" * 64,
            }
        ],
        "security_event_checkpoints": [
            {
                "before": NOW,
                "through_id": 2**40,
                "purged": 7,
                "chain_mac": "2" * 64,
                "previous": "GENESIS",
                "mac": "3" * 64,
                **at,
            }
        ],
        "security_alerts": [
            {
                "id": UUID("0b7a3a52-0000-4000-8000-000000000005"),
                "rule": "login_failures",
                "alert_key": "ip:198.51.100.4",
                "count": 10,
                "window_seconds": 60,
                "first_event_at": NOW,
                "last_event_at": NOW,
                "severity": "warning",
                **at,
            }
        ],
        "tasks": [
            {
                "id": TASK,
                "owner_id": OWNER,
                "title": "Written before the upgrade",
                "description": "kept",
                "status": "in_progress",
                "priority": "high",
                "due_date": NOW + timedelta(days=3),
                "tags": ["ops"],
                "updated_at": NOW,
                **at,
            }
        ],
        "task_shares": [
            {
                "task_id": TASK,
                "user_id": RESERVED,
                "permission": "view",
                "pending": True,
                "created_by": OWNER,
                **at,
            }
        ],
        "task_attachments": [
            {
                "id": UUID("0b7a3a52-0000-4000-8000-000000000006"),
                "task_id": TASK,
                "filename": "plan.txt",
                "content_type": "text/plain",
                "size": 12,
                "storage_key": "k" * 64,
                "created_by": OWNER,
                **at,
            }
        ],
    }


# The core's tables and columns added after the former history's last revision, and a
# row for each new table.
ADDED_SINCE_FORMER = {"external_identities", "mfa_totp", "mfa_recovery_codes"}
COLUMNS_ADDED_SINCE_FORMER = {"accounts": {"tokens_revoked_at"}, "auth_sessions": {"amr"}}
NEWER_ROWS: dict[str, list[dict[str, Any]]] = {
    "external_identities": [
        {"provider": "google", "subject": "1", "user_id": OWNER, "email": None, "created_at": NOW}
    ],
    "mfa_totp": [{"user_id": OWNER, "secret": "v1.sealed", "created_at": NOW, "confirmed_at": NOW}],
    "mfa_recovery_codes": [{"user_id": OWNER, "digest": "d" * 64, "used_at": None}],
}


def _without_newer(found: dict[str, Any]) -> dict[str, Any]:
    """A schema (from _schema) or the rows (from _read) without what was added since the
    former history: its tables, and the columns added to its tables."""
    kept: dict[str, Any] = {}
    for name, value in found.items():
        if name in ADDED_SINCE_FORMER:
            continue
        added = COLUMNS_ADDED_SINCE_FORMER.get(name, set())
        if isinstance(value, dict) and "columns" in value:  # a table's schema
            value = value | {"columns": [c for c in value["columns"] if c[0] not in added]}
        elif added and isinstance(value, list):  # a table's rows
            value = [{k: v for k, v in row.items() if k not in added} for row in value]
        kept[name] = value
    return kept


async def _password_hash() -> str:
    hasher = PasswordHasher(TEST_ONLY_INSECURE)
    try:
        return await hasher.hash(STRONG_PASSWORD)
    finally:
        hasher.close()


async def test_a_database_of_the_former_history_moves_onto_the_new_ones_with_every_row(
    new_database: Database, tmp_path: Path
) -> None:
    url = await new_database()
    await on(url, former_history, "0010")
    rows = _rows(await _password_hash())
    await on(url, _write, rows)
    before = await on(url, _read)
    assert set(before) == set(rows)  # every table of the former history holds a row
    assert all(before.values())

    await migrate_with(url, bastion_tasks.migrate.upgrade_connection)

    after = await on(url, _read)
    assert _without_newer(after) == before
    assert all(after[name] == [] for name in ADDED_SINCE_FORMER)
    fresh = await new_database()
    await migrate_with(fresh, bastion_tasks.migrate.upgrade_connection)
    assert await on(url, revisions) == await on(fresh, revisions)
    assert await on(url, _schema) == await on(fresh, _schema)

    # The service runs on it: the old account logs in and finds its old task.
    application = create_app(make_settings(tmp_path, database_url=url))
    async with LifespanManager(application):
        transport = httpx.ASGITransport(app=application, client=("203.0.113.7", 4711))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            pair = await login(client, "old@example.com")
            auth = {"Authorization": f"Bearer {pair['access_token']}"}
            listed = await client.get("/tasks", headers=auth)
            created = await client.post("/tasks", json={"title": "After"}, headers=auth)

    assert [task["title"] for task in listed.json()["items"]] == ["Written before the upgrade"]
    assert created.status_code == 201, created.text


async def test_an_older_revision_of_the_former_history_is_brought_forward_too(
    new_database: Database,
) -> None:
    url = await new_database()
    await on(url, former_history, "0001")
    rows = _rows("$argon2id$stored-before-0002")
    first = {"accounts", "auth_sessions", "refresh_tokens", "security_events", "tasks"}
    await on(url, _write, {name: rows[name] for name in first})
    before = await on(url, _read)

    await migrate_with(url, bastion_tasks.migrate.upgrade_connection)
    after = await on(url, _read)

    for name in first:  # the columns of 0001 kept their values
        assert [{k: row[k] for k in before[name][0]} for row in after[name]] == before[name]
    event = after["security_events"][0]
    assert (event["extra"], event["chain_prev"], event["chain_mac"]) == ({}, None, None)
    assert after["accounts"][0]["locked_at"] is None
    fresh = await new_database()
    await migrate_with(fresh, bastion_tasks.migrate.upgrade_connection)
    assert await on(url, _schema) == await on(fresh, _schema)


async def test_a_failed_move_leaves_the_database_as_it_was(new_database: Database) -> None:
    url = await new_database()
    await on(url, former_history, "0008")
    # A table in the way of revision 0010, after 0009 has changed the schema.
    await on(url, lambda c: c.execute(sa.text("CREATE TABLE token_denials (x INTEGER)")))
    before = await on(url, _schema)

    with pytest.raises(sa.exc.DBAPIError, match="token_denials"):
        await migrate_with(url, bastion_tasks.migrate.upgrade_connection)

    assert await on(url, revisions) == {"0008"}
    assert await on(url, _schema) == before


async def test_the_new_histories_build_exactly_the_schema_of_the_former_one(
    new_database: Database,
) -> None:
    former, current = await new_database(), await new_database()
    await on(former, former_history, "0010")
    await migrate_with(current, bastion_tasks.migrate.upgrade_connection)

    schema = await on(current, _schema)
    assert _without_newer(schema) == await on(former, _schema)
    assert set(schema) >= ADDED_SINCE_FORMER


def _core_diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection,
        opts={
            "compare_type": True,
            "include_object": lambda _o, name, type_, *_: (
                type_ != "table" or name in bastion.migrate.TABLES
            ),
        },
    )
    return list(compare_metadata(context, SQLModel.metadata))


async def test_the_core_alone_creates_its_tables_and_no_task_table(
    new_database: Database,
) -> None:
    url = await new_database()

    await migrate_with(url, bastion.migrate.upgrade_connection)

    assert await on(url, tables) == bastion.migrate.TABLES
    assert not TASK_TABLES & bastion.migrate.TABLES
    assert await on(url, _core_diff) == []  # the core's models and its history agree
    assert await on(url, revisions) == {bastion.migrate.HEAD}


async def test_migrating_the_core_again_changes_nothing(new_database: Database) -> None:
    url = await new_database()
    await migrate_with(url, bastion.migrate.upgrade_connection)
    rows = _rows("$argon2id$a-library-user") | NEWER_ROWS
    await on(url, _write, {name: rows[name] for name in bastion.migrate.TABLES})
    before = (await on(url, _schema), await on(url, _read), await on(url, revisions))

    await migrate_with(url, bastion.migrate.upgrade_connection)

    assert (await on(url, _schema), await on(url, _read), await on(url, revisions)) == before


async def test_the_task_history_adds_its_tables_to_a_core_only_database(
    new_database: Database,
) -> None:
    url, fresh = await new_database(), await new_database()
    await migrate_with(url, bastion.migrate.upgrade_connection)

    await migrate_with(url, bastion_tasks.migrate.upgrade_connection)

    await migrate_with(fresh, bastion_tasks.migrate.upgrade_connection)
    assert await on(url, _schema) == await on(fresh, _schema)
    # The task history's first revision, and the core's newest (which implies its first).
    assert await on(url, revisions) == {bastion_tasks.migrate.BASE, bastion.migrate.HEAD}


async def test_the_core_alone_refuses_a_database_of_the_former_history(
    new_database: Database,
) -> None:
    url = await new_database()
    await on(url, former_history, "0010")

    with pytest.raises(CommandError, match="bastion migrate"):
        await migrate_with(url, bastion.migrate.upgrade_connection)

    assert await on(url, revisions) == {"0010"}


def _host_history(tmp_path: Path) -> Config:
    """A host application's own Alembic history whose first revision needs the core's."""
    scripts = tmp_path / "host"
    (scripts / "versions").mkdir(parents=True)
    (scripts / "env.py").write_text(
        "from alembic import context\n"
        "context.configure(connection=context.config.attributes['connection'])\n"
        "with context.begin_transaction():\n"
        "    context.run_migrations()\n"
    )
    (scripts / "versions" / "host_0001_notes.py").write_text(
        "import sqlalchemy as sa\n"
        "from alembic import op\n"
        "revision = 'host_0001'\n"
        "down_revision = None\n"
        "branch_labels = ('host',)\n"
        "depends_on = 'bastion_0001'\n"
        "def upgrade():\n"
        "    op.create_table('notes', sa.Column('id', sa.Integer, primary_key=True),\n"
        "        sa.Column('account_id', sa.Uuid, sa.ForeignKey('accounts.id')))\n"
        "def downgrade():\n"
        "    op.drop_table('notes')\n"
    )
    config = Config()
    config.set_main_option("script_location", str(scripts))
    config.set_main_option("path_separator", "os")
    locations = [str(scripts / "versions"), bastion.migrate.VERSION_LOCATION]
    config.set_main_option("version_locations", os.pathsep.join(locations))
    return config


async def test_a_host_application_runs_the_core_history_inside_its_own(
    new_database: Database, tmp_path: Path
) -> None:
    url = await new_database()
    config = _host_history(tmp_path)

    def upgrade(connection: Connection) -> None:
        config.attributes["connection"] = connection
        command.upgrade(config, "heads")

    await on(url, upgrade)

    assert await on(url, tables) == bastion.migrate.TABLES | {"notes"}
    # One version table: the host's revision and the core's newest.
    assert await on(url, revisions) == {"host_0001", bastion.migrate.HEAD}
    assert await on(url, _core_diff) == []
