"""Refresh-token reuse: a rotated token that comes back ends its whole family.

ASVS 10.4.5, RFC 9700 §4.14.2, RFC 6749 §10.4: R1 -> R2 succeeds; presenting R1 again is
refused, R2 and the access tokens of the session are revoked, and one critical
``token_reuse_detected`` event names the user.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from bastion.testing import capture_events
from tests.helpers import login, signed_up


@dataclass
class Stolen:
    """A victim who rotated R1 into R2, and the attacker who still holds R1."""

    user_id: str
    session_id: uuid.UUID
    first: dict[str, Any]
    second: dict[str, Any]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/auth/refresh", json={"refresh_token": token})


@pytest.fixture
async def stolen(client: httpx.AsyncClient, app: Any) -> Stolen:
    first = await signed_up(client, "victim@example.com")
    user_id = (await client.get("/users/me", headers=first["auth"])).json()["id"]
    claims = app.state.security.access_tokens.verify(first["access_token"])
    rotated = await _refresh(client, first["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    return Stolen(user_id, uuid.UUID(claims.sid), first, rotated.json())


async def test_rotation_succeeds_once(client: httpx.AsyncClient, stolen: Stolen) -> None:
    me = await client.get("/users/me", headers=_bearer(stolen.second["access_token"]))

    assert stolen.second["refresh_token"] != stolen.first["refresh_token"]
    assert me.status_code == 200


async def test_reused_refresh_token_is_refused(client: httpx.AsyncClient, stolen: Stolen) -> None:
    response = await _refresh(client, stolen.first["refresh_token"])

    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert "access_token" not in response.text


async def test_reuse_revokes_the_successor_refresh_token(
    client: httpx.AsyncClient, stolen: Stolen
) -> None:
    await _refresh(client, stolen.first["refresh_token"])

    response = await _refresh(client, stolen.second["refresh_token"])

    assert response.status_code == 401


@pytest.mark.parametrize("which", ["first", "second"], ids=["before-rotation", "after-rotation"])
async def test_reuse_denies_the_access_tokens_of_the_session(
    client: httpx.AsyncClient, stolen: Stolen, which: str
) -> None:
    await _refresh(client, stolen.first["refresh_token"])

    response = await client.get(
        "/users/me", headers=_bearer(getattr(stolen, which)["access_token"])
    )

    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_reuse_emits_one_critical_event_for_the_user(
    client: httpx.AsyncClient, stolen: Stolen
) -> None:
    with capture_events() as events:
        await _refresh(client, stolen.first["refresh_token"])
        await _refresh(client, stolen.second["refresh_token"])
        await _refresh(client, stolen.first["refresh_token"])

    reuse = [e for e in events if e.event_type == "token_reuse_detected"]
    assert len(reuse) == 1
    assert reuse[0].severity == "critical"
    assert reuse[0].user_id == stolen.user_id
    assert reuse[0].endpoint == "/auth/refresh"


async def test_reuse_revokes_the_stored_session(
    client: httpx.AsyncClient, app: Any, stolen: Stolen
) -> None:
    sessions = app.state.security.stores.sessions
    assert (await sessions.get(stolen.session_id)).revoked_at is None

    await _refresh(client, stolen.first["refresh_token"])

    session = await sessions.get(stolen.session_id)
    assert session is not None
    assert session.revoked_at is not None


async def test_reuse_leaves_another_session_of_the_user_alive(
    client: httpx.AsyncClient, stolen: Stolen
) -> None:
    other = await login(client, "victim@example.com")

    await _refresh(client, stolen.first["refresh_token"])

    me = await client.get("/users/me", headers=_bearer(other["access_token"]))
    assert me.status_code == 200
    assert (await _refresh(client, other["refresh_token"])).status_code == 200
