"""Create and upgrade the security core's tables with its own Alembic history.

The core's history lives in ``bastion/migrations`` under the branch label ``bastion``.
A library user migrates it in one of two ways (docs/storage.md, "Migrations"):

- alone, with :func:`upgrade` (blocking) or :func:`upgrade_connection` (async), when the
  database holds no other Alembic history;
- inside the host application's own Alembic: add :data:`VERSION_LOCATION` to its
  ``version_locations``, make its first revision ``depends_on`` :data:`BASE` (or a later
  core revision it needs), and upgrade to ``heads``; :data:`TABLES` names the tables its
  autogenerate should leave to Bastion.

The task service's history (``bastion_tasks.migrate``) builds on this one, in the same
version table.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

from bastion.stores.sql import create_engine
from bastion.stores.sql import tables as _tables

__all__ = [
    "BASE",
    "BRANCH",
    "HEAD",
    "LEGACY_REVISIONS",
    "TABLES",
    "VERSION_LOCATION",
    "alembic_config",
    "current_revisions",
    "upgrade",
    "upgrade_connection",
    "upgrade_on",
]

_SCRIPTS = Path(__file__).with_name("migrations")

VERSION_LOCATION: Final[str] = str(_SCRIPTS / "versions")
"""The folder of the core's revisions, for a host application's ``version_locations``."""

BRANCH: Final = "bastion"
"""The core history's branch label: ``bastion@head`` is its newest revision."""

BASE: Final = "bastion_0001"
"""The core's first revision: every core table, as the former history's 0010 left them."""

HEAD: Final = "bastion_0004"
"""The core's newest revision (``bastion@head``)."""

LEGACY_REVISIONS: Final = frozenset(f"{n:04d}" for n in range(1, 11))
"""The revisions of the task service's former single history (0001 to 0010), which
created the core's tables and the task service's together. Only ``bastion_tasks.migrate``
moves a database from them onto the current histories."""

TABLES: Final = frozenset(
    model.__tablename__
    for model in vars(_tables).values()
    if isinstance(model, type)
    and issubclass(model, SQLModel)
    and model.__module__ == _tables.__name__
    and hasattr(model, "__table__")
)
"""The names of the tables the core's history creates."""


def alembic_config(database_url: str | None = None) -> Config:
    """The Alembic configuration of the core's history alone (also for new revisions)."""
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", VERSION_LOCATION)
    if database_url:
        config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def current_revisions(connection: Connection) -> tuple[str, ...]:
    """The revisions the database's version table holds (empty before any migration)."""
    return MigrationContext.configure(connection).get_current_heads()


def upgrade_on(connection: Connection, revision: str = "head") -> None:
    """Migrate the core's tables on a connection, in its transaction (``run_sync``).

    Refuses, before changing anything, a version table that holds revisions of another
    history: Alembic could not place them, and the core alone cannot upgrade them.
    """
    config = alembic_config()
    held = current_revisions(connection)
    if LEGACY_REVISIONS.intersection(held):
        raise CommandError(
            f"The database is at revision {', '.join(held)} of the task service's former "
            "history: upgrade it once with `bastion migrate` (bastion_tasks.migrate.upgrade), "
            "which moves it onto the current histories."
        )
    known = {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}
    if foreign := sorted(set(held) - known):
        raise CommandError(
            f"The version table holds revisions outside Bastion's core history "
            f"({', '.join(foreign)}): migrate this database with the history that wrote them "
            "(`bastion migrate` for the task service, or your own Alembic with "
            "bastion.migrate.VERSION_LOCATION among its version locations)."
        )
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def upgrade_connection(engine: AsyncEngine, revision: str = "head") -> None:
    """Migrate the core's tables through an async engine, in one transaction."""
    async with engine.begin() as connection:
        await connection.run_sync(upgrade_on, revision)


async def _upgrade_url(database_url: str, revision: str) -> None:
    engine = create_engine(database_url)
    try:
        await upgrade_connection(engine, revision)
    finally:
        await engine.dispose()


def upgrade(database_url: str, revision: str = "head") -> None:
    """Migrate the core's tables at ``database_url`` (blocking; call it outside an event
    loop). A second run finds nothing to do."""
    asyncio.run(_upgrade_url(database_url, revision))
