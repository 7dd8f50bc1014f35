"""Logout really ends sessions: no token of a logged-out session keeps working.

ASVS 7.4.1 (logout invalidates the session), 7.4.3 / 10.4.9 (the user can end every
session), RFC 9700 §4.14.2 (revocable refresh tokens); API.md ``/auth/logout`` and
``/auth/logout-all``.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.helpers import login, signed_up


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _me(client: httpx.AsyncClient, pair: dict[str, Any]) -> int:
    return (await client.get("/users/me", headers=_bearer(pair["access_token"]))).status_code


async def _refresh(client: httpx.AsyncClient, pair: dict[str, Any]) -> int:
    response = await client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    return response.status_code


async def _logout(
    client: httpx.AsyncClient, pair: dict[str, Any], body: dict[str, Any] | None = None
) -> None:
    response = await client.post("/auth/logout", headers=_bearer(pair["access_token"]), json=body)
    assert response.status_code == 204, response.text


@pytest.fixture
async def alice(client: httpx.AsyncClient) -> dict[str, Any]:
    return await signed_up(client, "alice@example.com")


async def test_logout_revokes_the_access_token(
    client: httpx.AsyncClient, alice: dict[str, Any]
) -> None:
    await _logout(client, alice)

    response = await client.get("/users/me", headers=alice["auth"])

    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_logout_revokes_the_refresh_token(
    client: httpx.AsyncClient, alice: dict[str, Any]
) -> None:
    await _logout(client, alice)

    assert await _refresh(client, alice) == 401


async def test_logout_without_a_token_is_refused_and_ends_nothing(
    client: httpx.AsyncClient, alice: dict[str, Any]
) -> None:
    response = await client.post("/auth/logout")

    assert response.status_code == 401
    assert await _me(client, alice) == 200
    assert await _refresh(client, alice) == 200


@pytest.mark.parametrize("token", ["access", "refresh"], ids=["access-token", "refresh-token"])
async def test_logout_with_a_refresh_token_in_the_body_revokes_that_session(
    client: httpx.AsyncClient, alice: dict[str, Any], token: str
) -> None:
    other = await login(client, "alice@example.com")

    await _logout(client, alice, {"refresh_token": other["refresh_token"]})

    status = await (_me if token == "access" else _refresh)(client, other)
    assert status == 401


@pytest.mark.parametrize("token", ["access", "refresh"], ids=["access-token", "refresh-token"])
async def test_logout_with_another_users_refresh_token_leaves_that_user_alone(
    client: httpx.AsyncClient, alice: dict[str, Any], token: str
) -> None:
    bob = await signed_up(client, "bob@example.com")

    await _logout(client, alice, {"refresh_token": bob["refresh_token"]})

    status = await (_me if token == "access" else _refresh)(client, bob)
    assert status == 200


async def test_logout_leaves_the_users_other_sessions_alive(
    client: httpx.AsyncClient, alice: dict[str, Any]
) -> None:
    other = await login(client, "alice@example.com")

    await _logout(client, alice)

    assert await _me(client, other) == 200
    assert await _refresh(client, other) == 200


@pytest.fixture
async def logged_out_everywhere(
    client: httpx.AsyncClient, alice: dict[str, Any]
) -> list[dict[str, Any]]:
    """Alice's two sessions (two separate logins), after ``/auth/logout-all`` from one."""
    second = await login(client, "alice@example.com")
    response = await client.post("/auth/logout-all", headers=alice["auth"])
    assert response.status_code == 204, response.text
    return [alice, second]


@pytest.mark.parametrize("session", [0, 1], ids=["calling-session", "other-session"])
async def test_logout_all_revokes_every_access_token(
    client: httpx.AsyncClient, logged_out_everywhere: list[dict[str, Any]], session: int
) -> None:
    status = await _me(client, logged_out_everywhere[session])

    assert status == 401


@pytest.mark.parametrize("session", [0, 1], ids=["calling-session", "other-session"])
async def test_logout_all_revokes_every_refresh_token(
    client: httpx.AsyncClient, logged_out_everywhere: list[dict[str, Any]], session: int
) -> None:
    status = await _refresh(client, logged_out_everywhere[session])

    assert status == 401


async def test_logout_all_leaves_another_user_logged_in(
    client: httpx.AsyncClient, alice: dict[str, Any]
) -> None:
    bob = await signed_up(client, "bob@example.com")

    response = await client.post("/auth/logout-all", headers=alice["auth"])

    assert response.status_code == 204
    assert await _me(client, bob) == 200
    assert await _refresh(client, bob) == 200


async def test_login_after_logout_all_works(
    client: httpx.AsyncClient, logged_out_everywhere: list[dict[str, Any]]
) -> None:
    fresh = await login(client, "alice@example.com")

    assert await _me(client, fresh) == 200
    assert await _refresh(client, fresh) == 200
