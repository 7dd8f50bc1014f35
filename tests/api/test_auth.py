"""The /auth and /users routes over both backend sets, as a client uses them."""

from __future__ import annotations

import httpx

from bastion.testing import capture_events
from tests.helpers import STRONG_PASSWORD, login, register, signed_up


async def test_register_answers_202(client: httpx.AsyncClient) -> None:
    response = await register(client, "alice@example.com")

    assert response.status_code == 202
    assert response.json()["status"] == "accepted"


async def test_register_existing_email_answers_the_same(client: httpx.AsyncClient) -> None:
    first = await register(client, "alice@example.com")
    second = await register(client, "ALICE@example.com", "another long passphrase 77 here")

    assert second.status_code == first.status_code == 202
    assert second.json() == first.json()


async def test_login_returns_a_token_pair(client: httpx.AsyncClient) -> None:
    await register(client, "alice@example.com")

    pair = await login(client, "alice@example.com")

    assert pair["token_type"] == "bearer"
    assert pair["expires_in"] == 900
    assert pair["refresh_expires_in"] > 0
    assert pair["access_token"].count(".") == 2
    assert len(pair["refresh_token"]) >= 43


async def test_login_matches_email_case_insensitively(client: httpx.AsyncClient) -> None:
    await register(client, "Alice@Example.COM")

    pair = await login(client, "alice@example.com")

    assert pair["access_token"]


async def test_token_form_login_for_the_docs(client: httpx.AsyncClient) -> None:
    await register(client, "alice@example.com")

    response = await client.post(
        "/auth/token", data={"username": "alice@example.com", "password": STRONG_PASSWORD}
    )

    assert response.status_code == 200
    assert response.json()["token_type"] == "bearer"


async def test_users_me_returns_the_contract_fields(client: httpx.AsyncClient) -> None:
    pair = await signed_up(client, "alice@example.com")

    response = await client.get("/users/me", headers=pair["auth"])

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "id",
        "email",
        "display_name",
        "role",
        "email_verified",
        "mfa_enabled",
        "created_at",
    }
    assert body["email"] == "alice@example.com"
    assert body["role"] == "member"
    assert body["created_at"].endswith("Z")


async def test_refresh_rotates_the_pair(client: httpx.AsyncClient) -> None:
    pair = await signed_up(client, "alice@example.com")

    response = await client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})

    assert response.status_code == 200
    new = response.json()
    assert new["refresh_token"] != pair["refresh_token"]
    me = await client.get("/users/me", headers={"Authorization": f"Bearer {new['access_token']}"})
    assert me.status_code == 200


async def test_auth_events_are_emitted(client: httpx.AsyncClient) -> None:
    with capture_events() as events:
        await signed_up(client, "alice@example.com")
        await client.post("/auth/login", json={"email": "alice@example.com", "password": "x" * 20})

    types = [e.event_type for e in events]
    assert types == ["user_registered", "auth_success", "auth_failure"]
    failure = events[-1]
    assert failure.ip_address == "203.0.113.7"
    assert failure.endpoint == "/auth/login"
    assert failure.method == "POST"
    assert failure.request_id
