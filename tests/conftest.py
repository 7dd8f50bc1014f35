"""Shared fixtures: real PostgreSQL and Redis, fresh SQLite files, the real app.

PostgreSQL and Redis are not optional: a test that needs them fails (never skips)
when they cannot be reached. Each run creates its own PostgreSQL database and Redis
key prefix and removes them at the end.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
import sqlalchemy as sa
from asgi_lifespan import LifespanManager

from bastion.clock import Clock
from bastion.stores.sql import create_engine
from bastion_tasks import create_app
from bastion_tasks.migrate import upgrade_connection
from bastion_tasks.settings import TaskSettings
from tests.oidc.harness import Provider, running_provider
from tests.redis_server import RedisServer
from tests.smtp import SMTPTestServer

PG_ADMIN_DSN = os.environ.get("BASTION_TEST_PG_DSN", "postgresql://127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BASTION_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RUN_ID = secrets.token_hex(4)
BACKENDS = ["sqlite", "postgres"]
STRONG_PASSWORD = "correct horse battery staple 42"


def _unreachable(what: str, exc: BaseException) -> None:
    pytest.fail(
        f"{what} is required for the tests and could not be reached ({exc!r}). "
        "Start it (see .ci/run) and run again.",
        pytrace=False,
    )


@pytest.fixture(scope="session")
async def pg_database() -> AsyncIterator[str]:
    """A fresh PostgreSQL database for this run, migrated once; dropped at the end."""
    name = f"bastion_test_{RUN_ID}"
    try:
        admin = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        _unreachable(f"PostgreSQL at {PG_ADMIN_DSN}", exc)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        host_part = PG_ADMIN_DSN.split("://", 1)[1].rsplit("/", 1)[0]
        url = f"postgresql+asyncpg://{host_part}/{name}"
        engine = create_engine(url)
        await upgrade_connection(engine)
        await engine.dispose()
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(scope="session")
async def redis_prefix() -> AsyncIterator[str]:
    """This run's Redis key prefix; every key under it is deleted at the end."""
    prefix = f"bastion-test-{RUN_ID}:"
    client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    try:
        await client.ping()
    except (OSError, aioredis.RedisError) as exc:
        await client.aclose()
        _unreachable(f"Redis at {REDIS_URL}", exc)
    try:
        yield prefix
    finally:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


_TABLES = [
    "token_denials",
    "one_time_tokens",
    "refresh_tokens",
    "auth_sessions",
    "task_shares",
    "tasks",
    "security_events",
    "security_event_checkpoints",
    "security_alerts",
    "account_reservations",
    "external_identities",
    "accounts",
]


async def _truncate(url: str) -> None:
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.execute(sa.text(f"TRUNCATE {', '.join(_TABLES)} RESTART IDENTITY CASCADE"))
    await engine.dispose()


@pytest.fixture
async def database_url(backend: str, pg_database: str, tmp_path: Path) -> AsyncIterator[str]:
    """A migrated, empty database of the backend named by the ``backend`` parameter."""
    if backend == "postgres":
        await _truncate(pg_database)
        yield pg_database
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'bastion.db'}"
        engine = create_engine(url)
        await upgrade_connection(engine)
        await engine.dispose()
        yield url


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """sqlite: SQLite + in-process stores; postgres: PostgreSQL + Redis."""
    return str(request.param)


def make_settings(tmp_path: Path, **overrides: Any) -> TaskSettings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "var",
        "password_profile": "test-only-insecure",
        "log_events_to_stdout": True,
        # Off unless a test is about them: other tests send more than a person would.
        "rate_limit_enabled": False,
        "login_defence_enabled": False,
    }
    values.update(overrides)
    return TaskSettings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
async def settings(
    backend: str, database_url: str, redis_prefix: str, tmp_path: Path
) -> TaskSettings:
    overrides: dict[str, Any] = {"database_url": database_url}
    if backend == "postgres":
        overrides["redis_url"] = REDIS_URL
        overrides["redis_key_prefix"] = f"{redis_prefix}{secrets.token_hex(4)}:"
    return make_settings(tmp_path, **overrides)


@pytest.fixture
async def app(settings: TaskSettings) -> AsyncIterator[Any]:
    application = create_app(settings)
    async with LifespanManager(application):
        yield application


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(
        app=app, raise_app_exceptions=False, client=("203.0.113.7", 4711)
    )
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


class AppMaker:
    """Apps of this test's backend with settings changed, and clients from given IPs;
    all closed at the end of the test."""

    def __init__(self, settings: TaskSettings, stack: AsyncExitStack) -> None:
        self._settings = settings
        self._stack = stack

    async def app(self, *, clock: Clock | None = None, **overrides: Any) -> Any:
        values = {**self._settings.model_dump(), **overrides}
        settings = TaskSettings(_env_file=None, **values)  # type: ignore[call-arg]
        application = create_app(settings, clock=clock)
        await self._stack.enter_async_context(LifespanManager(application))
        return application

    async def client(self, app: Any, ip: str = "203.0.113.7") -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(ip, 4711))
        client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        return await self._stack.enter_async_context(client)


@pytest.fixture
async def make(settings: TaskSettings) -> AsyncIterator[AppMaker]:
    async with AsyncExitStack() as stack:
        yield AppMaker(settings, stack)


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    """A real OpenID provider (``tests/oidc``: oidc-provider from npm), one per module."""
    with running_provider() as running:
        yield running


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No BASTION_* variable from the outer environment leaks into a test."""
    for name in list(os.environ):
        if name.startswith("BASTION_") and not name.startswith("BASTION_TEST_"):
            monkeypatch.delenv(name)


@pytest.fixture
async def smtp() -> AsyncIterator[SMTPTestServer]:
    """A real SMTP server on loopback that records what it receives."""
    async with SMTPTestServer() as server:
        yield server


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    """A redis-server of this test's own, on a free port: one a test may stop,
    restart or empty."""
    server = RedisServer(tmp_path)
    await server.start()
    try:
        yield server
    finally:
        server.stop()
