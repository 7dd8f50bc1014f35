"""Every store protocol on every backend: one test body, parametrized by backend.

The account, session and event stores run on ``memory``, ``sqlite`` (a fresh migrated
file per test) and ``postgres`` (this run's database, emptied before each test); the
revocation store runs on ``memory`` and ``redis`` (a fresh key prefix per test).
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import UUID, uuid4

import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from bastion.stores import (
    AccountStore,
    EventStore,
    RevocationStore,
    SessionStore,
    Stores,
    open_stores,
)
from bastion.stores.memory import MemoryRevocationStore
from bastion.stores.redis import RedisRevocationStore
from bastion.stores.sql import SQLSessionStore, create_engine
from bastion_tasks.migrate import upgrade_connection
from tests.conftest import REDIS_URL, _truncate
from tests.contract.support import SessionStoresFactory, make_account, no_denials

SQL_BACKENDS = ["memory", "sqlite", "postgres"]
REVOCATION_BACKENDS = ["memory", "redis"]


@pytest.fixture(scope="session")
async def migrated_sqlite_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty SQLite database migrated once per run, for each test to copy."""
    path = tmp_path_factory.mktemp("sqlite-template") / "migrated.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    await upgrade_connection(engine)
    await engine.dispose()  # the last connection to close checkpoints the WAL into the file
    return path


@pytest.fixture(params=SQL_BACKENDS, ids=SQL_BACKENDS)
async def store_database_url(
    request: pytest.FixtureRequest, pg_database: str, migrated_sqlite_file: Path, tmp_path: Path
) -> str:
    """The URL of an empty, migrated database of this backend (``memory://`` for memory)."""
    if request.param == "memory":
        return "memory://"
    if request.param == "postgres":
        await _truncate(pg_database)
        return pg_database
    path = tmp_path / "contract.db"
    shutil.copyfile(migrated_sqlite_file, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
async def stores(store_database_url: str) -> AsyncIterator[Stores]:
    opened = open_stores(store_database_url)
    yield opened
    await opened.aclose()


@pytest.fixture
def account_store(stores: Stores) -> AccountStore:
    return stores.accounts


@pytest.fixture
def session_store(stores: Stores) -> SessionStore:
    return stores.sessions


@pytest.fixture
def event_store(stores: Stores) -> EventStore:
    return stores.events


@pytest.fixture
async def user_id(account_store: AccountStore) -> UUID:
    """An account on the session store's backend (SQL sessions reference accounts)."""
    account = make_account("owner@example.com")
    await account_store.add(account)
    return account.id


@pytest.fixture
async def racing_session_stores(
    store_database_url: str, session_store: SessionStore
) -> AsyncIterator[SessionStoresFactory]:
    """``n`` session stores over the same data that can race each other.

    On SQL backends each store has its own engine, hence its own connection pool: their
    statements genuinely run concurrently in the database server (SQLite serialises them
    with its write lock). The memory backend has one store, serialised by its lock.
    """
    engines: list[AsyncEngine] = []

    async def make(n: int) -> list[SessionStore]:
        if store_database_url == "memory://":
            return [session_store] * n
        racing: list[SessionStore] = []
        for _ in range(n):
            engine = create_engine(store_database_url)
            engines.append(engine)
            store = SQLSessionStore(engine)
            await store.get(uuid4())  # open the pool's connection before the race starts
            racing.append(store)
        return racing

    yield make
    for engine in engines:
        await engine.dispose()


@pytest.fixture
def redis_key_prefix(redis_prefix: str) -> str:
    """A prefix of this test's own, under the run's prefix (removed at the end of the run)."""
    return f"{redis_prefix}{secrets.token_hex(4)}:"


@pytest.fixture
async def redis_client() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture
async def redis_revocation_store(redis_key_prefix: str) -> AsyncIterator[RedisRevocationStore]:
    store = RedisRevocationStore.from_url(REDIS_URL, prefix=redis_key_prefix)
    yield store
    await store.aclose()


@pytest.fixture(params=REVOCATION_BACKENDS, ids=REVOCATION_BACKENDS)
async def revocation_store(
    request: pytest.FixtureRequest, redis_key_prefix: str
) -> AsyncIterator[RevocationStore]:
    store: RevocationStore
    if request.param == "memory":
        store = MemoryRevocationStore()
    else:
        store = RedisRevocationStore.from_url(REDIS_URL, prefix=redis_key_prefix)
    await store.rebuild(no_denials)  # a cache answers once filled from the durable record
    yield store
    await store.aclose()
