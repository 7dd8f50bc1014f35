"""What the migration tests share: empty databases of each backend, the former single
history (revisions 0001 to 0010) run as the last release ran it, and what a database holds."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

import bastion_tasks.migrate
from bastion.stores.sql import create_engine
from tests.conftest import PG_ADMIN_DSN

TASK_SCRIPTS = Path(bastion_tasks.migrate.__file__).with_name("migrations")
TASK_TABLES = frozenset({"tasks", "task_shares", "task_attachments"})
Database = Callable[[], Awaitable[str]]


@asynccontextmanager
async def empty_databases(backend: str, folder: Path) -> AsyncIterator[Database]:
    """Makes empty databases of the backend: SQLite files in ``folder``, or PostgreSQL
    databases dropped on leaving."""
    names: list[str] = []
    admin = await asyncpg.connect(PG_ADMIN_DSN, timeout=5) if backend == "postgres" else None

    async def make() -> str:
        names.append(f"bastion_test_migrations_{secrets.token_hex(6)}")
        if admin is None:
            return f"sqlite+aiosqlite:///{folder / names[-1]}.db"
        await admin.execute(f'CREATE DATABASE "{names[-1]}"')
        host = PG_ADMIN_DSN.split("://", 1)[1].rsplit("/", 1)[0]
        return f"postgresql+asyncpg://{host}/{names[-1]}"

    try:
        yield make
    finally:
        if admin is not None:
            for name in names:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()


async def on(url: str, work: Callable[..., Any], *args: Any) -> Any:
    """Run ``work(connection, *args)`` in one transaction on the database at ``url``."""
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            return await connection.run_sync(work, *args)
    finally:
        await engine.dispose()


async def migrate_with(
    url: str, upgrade_connection: Callable[[AsyncEngine], Awaitable[None]]
) -> None:
    engine = create_engine(url)
    try:
        await upgrade_connection(engine)
    finally:
        await engine.dispose()


def former_history(connection: Connection, revision: str) -> None:
    """Migrate with the former single history, as a deployment of the last release did."""
    config = Config()
    config.set_main_option("script_location", str(TASK_SCRIPTS))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", str(TASK_SCRIPTS / "legacy"))
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def revisions(connection: Connection) -> set[str]:
    """What the version table holds."""
    return set(MigrationContext.configure(connection).get_current_heads())


def tables(connection: Connection) -> set[str]:
    return set(sa.inspect(connection).get_table_names()) - {"alembic_version"}
