"""Mass assignment: fields a client must not set are refused, and nothing is stored.

OWASP API3:2023 (Broken Object Property Level Authorization), ASVS 15.3.3; API.md:
``PATCH /users/me`` takes only ``display_name``; a task's ``id``, ``owner_id`` and
timestamps are never accepted from a client.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from bastion.stores import Account
from tests.helpers import STRONG_PASSWORD, register, signed_up, user

ACCOUNT_FIELDS: dict[str, Any] = {
    "role": "admin",
    "email": "mallory@example.com",
    "id": "00000000-0000-4000-8000-000000000001",
    "is_active": False,
    "email_verified": True,
    "password_hash": "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
    "mfa_enabled": True,
    "token_version": 99,
}
TASK_FIELDS: dict[str, Any] = {
    "id": "00000000-0000-4000-8000-000000000002",
    "owner_id": "OTHER_USER",
    "created_at": "2000-01-01T00:00:00Z",
    "updated_at": "2000-01-01T00:00:00Z",
    "is_deleted": True,
}


@pytest.fixture
async def alice(client: httpx.AsyncClient) -> dict[str, Any]:
    pair = await signed_up(client, "alice@example.com")
    pair["id"] = (await client.get("/users/me", headers=pair["auth"])).json()["id"]
    return pair


@pytest.fixture
async def bob(client: httpx.AsyncClient) -> dict[str, Any]:
    pair = await signed_up(client, "bob@example.com")
    pair["id"] = (await client.get("/users/me", headers=pair["auth"])).json()["id"]
    return pair


async def _stored(app: Any, user_id: str) -> Account:
    account = await app.state.security.stores.accounts.get(uuid.UUID(user_id))
    assert account is not None
    return account


def _task_value(field: str, bob: dict[str, Any]) -> Any:
    value = TASK_FIELDS[field]
    return bob["id"] if value == "OTHER_USER" else value


async def _tasks_of(client: httpx.AsyncClient, user: dict[str, Any]) -> list[dict[str, Any]]:
    response = await client.get("/tasks", headers=user["auth"])
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


@pytest.mark.parametrize("field", list(ACCOUNT_FIELDS), ids=list(ACCOUNT_FIELDS))
async def test_patch_me_refuses_a_protected_field(
    client: httpx.AsyncClient, alice: dict[str, Any], field: str
) -> None:
    response = await client.patch(
        "/users/me",
        json={"display_name": "Alice", field: ACCOUNT_FIELDS[field]},
        headers=alice["auth"],
    )

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert ["body", field] in [error["loc"] for error in response.json()["errors"]]


@pytest.mark.parametrize("field", list(ACCOUNT_FIELDS), ids=list(ACCOUNT_FIELDS))
async def test_patch_me_with_a_protected_field_changes_nothing(
    client: httpx.AsyncClient, app: Any, alice: dict[str, Any], field: str
) -> None:
    before = await _stored(app, alice["id"])

    await client.patch(
        "/users/me",
        json={"display_name": "Alice", field: ACCOUNT_FIELDS[field]},
        headers=alice["auth"],
    )

    assert await _stored(app, alice["id"]) == before
    me = await client.get("/users/me", headers=alice["auth"])
    assert me.json()["role"] == "member"


async def test_patch_me_still_changes_the_display_name(
    client: httpx.AsyncClient, app: Any, alice: dict[str, Any]
) -> None:
    response = await client.patch(
        "/users/me", json={"display_name": "Alice"}, headers=alice["auth"]
    )

    assert response.status_code == 200
    assert (await _stored(app, alice["id"])).display_name == "Alice"


@pytest.mark.parametrize("field", list(TASK_FIELDS), ids=list(TASK_FIELDS))
async def test_create_task_refuses_a_server_owned_field(
    client: httpx.AsyncClient, alice: dict[str, Any], bob: dict[str, Any], field: str
) -> None:
    response = await client.post(
        "/tasks", json={"title": "Mine", field: _task_value(field, bob)}, headers=alice["auth"]
    )

    assert response.status_code == 422
    assert ["body", field] in [error["loc"] for error in response.json()["errors"]]
    assert await _tasks_of(client, alice) == []
    assert await _tasks_of(client, bob) == []


@pytest.mark.parametrize("field", list(TASK_FIELDS), ids=list(TASK_FIELDS))
async def test_patch_task_refuses_a_server_owned_field(
    client: httpx.AsyncClient, alice: dict[str, Any], bob: dict[str, Any], field: str
) -> None:
    created = await client.post("/tasks", json={"title": "Mine"}, headers=alice["auth"])
    task = created.json()

    response = await client.patch(
        f"/tasks/{task['id']}",
        json={"title": "Changed", field: _task_value(field, bob)},
        headers=alice["auth"],
    )

    assert response.status_code == 422
    assert ["body", field] in [error["loc"] for error in response.json()["errors"]]
    stored = await client.get(f"/tasks/{task['id']}", headers=alice["auth"])
    assert stored.json() == task
    assert await _tasks_of(client, bob) == []


@pytest.mark.parametrize(
    "field",
    ["role", "is_active", "email_verified", "id", "token_version"],
    ids=["role", "is_active", "email_verified", "id", "token_version"],
)
async def test_register_refuses_a_protected_field_and_creates_nothing(
    client: httpx.AsyncClient, app: Any, field: str
) -> None:
    response = await register(client, "mallory@example.com", **{field: ACCOUNT_FIELDS[field]})

    assert response.status_code == 422
    assert await app.state.security.stores.accounts.get_by_email("mallory@example.com") is None
    login = await client.post(
        "/auth/login", json={"email": "mallory@example.com", "password": STRONG_PASSWORD}
    )
    assert login.status_code == 401


async def test_register_with_role_admin_creates_no_admin(
    client: httpx.AsyncClient, app: Any
) -> None:
    await register(client, "mallory@example.com", role="admin")
    await register(client, "mallory@example.com")

    account = await app.state.security.stores.accounts.get_by_email("mallory@example.com")
    assert account is not None
    assert account.role == "member"


SHARE_FIELDS: dict[str, Any] = {
    "user_id": "OTHER_USER",
    "task_id": "00000000-0000-4000-8000-000000000003",
    "created_by": "OTHER_USER",
    "role": "admin",
}


@pytest.mark.parametrize("field", list(SHARE_FIELDS), ids=list(SHARE_FIELDS))
async def test_share_refuses_a_server_owned_field(
    client: httpx.AsyncClient, alice: dict[str, Any], bob: dict[str, Any], field: str
) -> None:
    task = (await client.post("/tasks", json={"title": "Mine"}, headers=alice["auth"])).json()

    response = await client.post(
        f"/tasks/{task['id']}/shares",
        json={
            "email": "carol@example.com",
            "permission": "read",
            field: bob["id"] if SHARE_FIELDS[field] == "OTHER_USER" else SHARE_FIELDS[field],
        },
        headers=alice["auth"],
    )

    assert response.status_code == 422
    assert ["body", field] in [error["loc"] for error in response.json()["errors"]]
    shares = await client.get(f"/tasks/{task['id']}/shares", headers=alice["auth"])
    assert shares.json() == []


ADMIN_PATCH_FIELDS = {
    name: value for name, value in ACCOUNT_FIELDS.items() if name not in {"role", "is_active"}
}


@pytest.mark.parametrize("field", list(ADMIN_PATCH_FIELDS), ids=list(ADMIN_PATCH_FIELDS))
async def test_admin_patch_accepts_only_role_and_active_flag(
    client: httpx.AsyncClient, app: Any, alice: dict[str, Any], field: str
) -> None:
    admin = await user(client, app, "admin@example.com", "admin")
    before = await _stored(app, alice["id"])

    response = await client.patch(
        f"/admin/users/{alice['id']}",
        json={"role": "viewer", field: ADMIN_PATCH_FIELDS[field]},
        headers=admin["auth"],
    )

    assert response.status_code == 422
    assert ["body", field] in [error["loc"] for error in response.json()["errors"]]
    assert await _stored(app, alice["id"]) == before
