"""Run the Alembic migrations programmatically (``bastion migrate``; ``serve`` on SQLite)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["alembic_config", "upgrade", "upgrade_connection"]

_SCRIPTS = Path(__file__).with_name("migrations")


def alembic_config(database_url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    if database_url:
        config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Migrate the database at ``database_url`` (blocking; call it outside an event loop)."""
    command.upgrade(alembic_config(database_url), revision)


def _upgrade_on(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def upgrade_connection(engine: AsyncEngine, revision: str = "head") -> None:
    """Migrate through an existing async engine, from inside a running event loop."""
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade_on, revision)
