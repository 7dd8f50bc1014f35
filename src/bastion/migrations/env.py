"""Alembic environment of the core's history: a connection handed in by ``bastion.migrate``,
or an async engine for the URL of ``bastion.migrate.alembic_config(url)``."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from bastion.migrate import TABLES
from bastion.stores.sql import create_engine

config = context.config


def _core_only(_object: Any, name: str | None, type_: str, _reflected: bool, _other: Any) -> bool:
    """Autogenerate compares the core's tables only: the database may hold a host
    application's or the task service's, and ``SQLModel.metadata`` may describe them."""
    return type_ != "table" or name in TABLES


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        include_object=_core_only,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(url: str) -> None:
    engine = create_engine(url)
    async with engine.connect() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    asyncio.run(_run_async(config.get_main_option("sqlalchemy.url") or ""))
