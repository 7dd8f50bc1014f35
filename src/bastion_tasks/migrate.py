"""Run the Alembic migrations of the core and the task service (``bastion migrate``;
``serve`` on SQLite).

Two histories share one version table: the core's (``bastion.migrate``, branch
``bastion``) and the task service's (``migrations/versions``, branch ``bastion_tasks``,
whose first revision depends on the core's). A database made by the former single
history (``migrations/legacy``, revisions 0001 to 0010) is moved onto them on its next
upgrade: brought to 0010 by the former scripts, then stamped with the task history's
first revision (which implies the core's first: together they build exactly that
schema), then upgraded as usual; on one connection, in one transaction, so that a
failure leaves it as it was.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

import bastion.migrate as core
from bastion.stores.sql import create_engine

__all__ = ["BASE", "BRANCH", "LEGACY_HEAD", "alembic_config", "upgrade", "upgrade_connection"]

_SCRIPTS = Path(__file__).with_name("migrations")

BRANCH: Final = "bastion_tasks"
"""The task history's branch label."""

BASE: Final = "bastion_tasks_0001"
"""The task history's first revision: the task tables as the former history's 0010 left them."""

LEGACY_HEAD: Final = "0010"
"""The last revision of the former single history."""


def _config(version_locations: list[str], connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", os.pathsep.join(version_locations))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _current(connection: Connection | None = None) -> Config:
    return _config([core.VERSION_LOCATION, str(_SCRIPTS / "versions")], connection)


def alembic_config(database_url: str | None = None) -> Config:
    """The configuration of both current histories (also for new revisions)."""
    config = _current()
    if database_url:
        config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def _upgrade_on(connection: Connection, revision: str) -> None:
    """Migrate on a connection, in its transaction; first move a database of the former
    history onto the current ones."""
    if core.LEGACY_REVISIONS.intersection(core.current_revisions(connection)):
        command.upgrade(_config([str(_SCRIPTS / "legacy")], connection), LEGACY_HEAD)
        # purge: the current histories do not know the former revision it replaces. BASE
        # depends on the core's first revision: the version table holds BASE for both.
        command.stamp(_current(connection), BASE, purge=True)
    config = _current(connection)
    # "head" was the one head of the former history; there are two heads now.
    command.upgrade(config, "heads" if revision == "head" else revision)


async def upgrade_connection(engine: AsyncEngine, revision: str = "heads") -> None:
    """Migrate through an existing async engine, from inside a running event loop."""
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade_on, revision)


async def _upgrade_url(database_url: str, revision: str) -> None:
    engine = create_engine(database_url)
    try:
        await upgrade_connection(engine, revision)
    finally:
        await engine.dispose()


def upgrade(database_url: str, revision: str = "heads") -> None:
    """Migrate the database at ``database_url`` (blocking; call it outside an event loop)."""
    asyncio.run(_upgrade_url(database_url, revision))
