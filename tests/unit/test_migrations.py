"""The Alembic migrations create exactly the schema the models describe."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import bastion.stores.sql.tables
import bastion_tasks.models
from bastion.stores.sql import create_engine

assert bastion.stores.sql.tables  # register every table
assert bastion_tasks.models


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, SQLModel.metadata))


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_models_and_migrations_agree(database_url: str) -> None:
    engine = create_engine(database_url)
    async with engine.connect() as conn:
        diff = await conn.run_sync(_diff)
    await engine.dispose()

    assert diff == []
