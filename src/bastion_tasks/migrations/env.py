"""Alembic environment of the task service: a connection handed in by ``bastion_tasks.migrate``,
or an async engine for the URL of ``bastion_tasks.migrate.alembic_config(url)``.

The same environment runs the current histories (the core's and the task service's) and
the former single history in ``legacy/``, which only moves old databases forward.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import bastion.stores.sql.tables
import bastion_tasks.models  # noqa: F401  (registers the task tables)
from bastion.stores.sql import create_engine

target_metadata = SQLModel.metadata
config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
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


assert bastion.stores.sql.tables  # the core's tables are part of the schema too
connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    asyncio.run(_run_async(config.get_main_option("sqlalchemy.url") or ""))
