"""Stored hashes are upgraded on the next successful login (legacy bcrypt, old profiles)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
from asgi_lifespan import LifespanManager

from bastion_tasks import create_app
from tests.conftest import make_settings
from tests.helpers import STRONG_PASSWORD, login, register


async def _stored_hash(app: Any, email: str) -> str:
    account = await app.state.security.stores.accounts.get_by_email(email)
    assert account is not None
    return str(account.password_hash)


@pytest.fixture
async def legacy_hash(app: Any, client: httpx.AsyncClient) -> str:
    """An account whose stored hash is an imported bcrypt hash of STRONG_PASSWORD."""
    await register(client, "legacy@example.com")
    accounts = app.state.security.stores.accounts
    account = await accounts.get_by_email("legacy@example.com")
    legacy = bcrypt.hashpw(STRONG_PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    await accounts.update(account.id, password_hash=legacy)
    return legacy


async def test_imported_bcrypt_hash_is_upgraded_to_argon2id(
    app: Any, client: httpx.AsyncClient, legacy_hash: str
) -> None:
    await login(client, "legacy@example.com")

    assert (await _stored_hash(app, "legacy@example.com")).startswith("$argon2id$")


async def test_wrong_password_leaves_a_bcrypt_hash_alone(
    app: Any, client: httpx.AsyncClient, legacy_hash: str
) -> None:
    response = await client.post(
        "/auth/login", json={"email": "legacy@example.com", "password": STRONG_PASSWORD + "x"}
    )

    assert response.status_code == 401
    assert await _stored_hash(app, "legacy@example.com") == legacy_hash


@pytest.fixture
async def app_factory(tmp_path: Path, database_url: str) -> AsyncIterator[Any]:
    async def start(**overrides: Any) -> tuple[Any, httpx.AsyncClient, LifespanManager]:
        settings = make_settings(tmp_path, database_url=database_url, **overrides)
        app = create_app(settings)
        manager = LifespanManager(app)
        await manager.__aenter__()
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        return app, httpx.AsyncClient(transport=transport, base_url="http://t"), manager

    started: list[tuple[httpx.AsyncClient, LifespanManager]] = []

    async def tracked(**overrides: Any) -> tuple[Any, httpx.AsyncClient]:
        app, client, manager = await start(**overrides)
        started.append((client, manager))
        return app, client

    yield tracked
    for client, manager in reversed(started):
        await client.aclose()
        await manager.__aexit__(None, None, None)


@pytest.mark.real_argon2
@pytest.mark.parametrize("backend", ["sqlite"])
async def test_changed_profile_upgrades_the_hash_on_login(app_factory: Any) -> None:
    old_app, old_client = await app_factory(password_profile="test-only-insecure")
    await register(old_client, "alice@example.com")
    assert "m=8,t=1,p=1" in await _stored_hash(old_app, "alice@example.com")
    new_app, new_client = await app_factory(password_profile="owasp-minimum")

    await login(new_client, "alice@example.com")

    assert "m=19456,t=2,p=1" in await _stored_hash(new_app, "alice@example.com")


@pytest.mark.real_argon2
@pytest.mark.parametrize("backend", ["sqlite"])
async def test_register_and_login_with_the_default_profile(app_factory: Any) -> None:
    app, client = await app_factory(password_profile="rfc9106-low-memory")

    await register(client, "alice@example.com")
    pair = await login(client, "alice@example.com")

    assert pair["access_token"]
    assert "$argon2id$v=19$m=65536,t=3,p=4$" in await _stored_hash(app, "alice@example.com")
