"""Privilege escalation: through /users/me, share routes, admin routes, and old tokens.

OWASP API5:2023 (function level) and API3:2023 (property level); ASVS 8.2.1-8.2.3, 8.3.2.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bastion.testing import capture_events
from tests.helpers import refreshed_auth, user

ADMIN_ROUTES = [
    ("GET", "/admin/users", None),
    ("PATCH", "/admin/users/{me}", {"role": "admin"}),
    ("POST", "/admin/users/{me}/revoke-sessions", None),
    ("GET", "/admin/security/decision?user_id={me}&method=GET&path=/tasks", None),
]


@pytest.fixture
async def member(client: httpx.AsyncClient, app: Any) -> dict[str, Any]:
    return await user(client, app, "member@example.com")


@pytest.fixture
async def owner(client: httpx.AsyncClient, app: Any) -> dict[str, Any]:
    pair = await user(client, app, "owner@example.com")
    created = await client.post("/tasks", json={"title": "owned"}, headers=pair["auth"])
    pair["task"] = created.json()
    return pair


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES, ids=[r[1] for r in ADMIN_ROUTES])
async def test_a_member_token_on_an_admin_route_is_403_and_logged(
    client: httpx.AsyncClient,
    member: dict[str, Any],
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    with capture_events() as events:
        response = await client.request(
            method, path.format(me=member["id"]), json=body, headers=member["auth"]
        )

    assert response.status_code == 403
    assert response.json()["type"] == "/problems/forbidden"
    [denied] = [e for e in events if e.event_type == "permission_denied"]
    assert denied.user_id == member["id"]
    assert denied.extra["decision"]["permissions_checked"] == ["ADMIN"]
    me = await client.get("/users/me", headers=member["auth"])
    assert me.json()["role"] == "member"


@pytest.mark.parametrize(
    "body", [{"role": "admin"}, {"is_active": True}, {"display_name": "x", "role": "admin"}]
)
async def test_users_me_cannot_raise_the_callers_role(
    client: httpx.AsyncClient, member: dict[str, Any], body: dict[str, Any]
) -> None:
    response = await client.patch("/users/me", json=body, headers=member["auth"])

    assert response.status_code == 422
    assert (await client.get("/admin/users", headers=member["auth"])).status_code == 403


async def test_a_read_share_cannot_be_upgraded_by_its_holder(
    client: httpx.AsyncClient, owner: dict[str, Any], member: dict[str, Any]
) -> None:
    url = f"/tasks/{owner['task']['id']}/shares"
    await client.post(
        url, json={"email": "member@example.com", "permission": "read"}, headers=owner["auth"]
    )

    response = await client.post(
        url, json={"email": "member@example.com", "permission": "edit"}, headers=member["auth"]
    )

    assert response.status_code == 403
    shares = await client.get(url, headers=owner["auth"])
    assert shares.json() == [{"user_id": member["id"], "permission": "read"}]


async def test_an_edit_share_cannot_reshare_the_task(
    client: httpx.AsyncClient, app: Any, owner: dict[str, Any], member: dict[str, Any]
) -> None:
    accomplice = await user(client, app, "accomplice@example.com")
    url = f"/tasks/{owner['task']['id']}/shares"
    await client.post(
        url, json={"email": "member@example.com", "permission": "edit"}, headers=owner["auth"]
    )

    response = await client.post(
        url, json={"email": "accomplice@example.com", "permission": "edit"}, headers=member["auth"]
    )

    assert response.status_code == 403
    hidden = await client.get(f"/tasks/{owner['task']['id']}", headers=accomplice["auth"])
    assert hidden.status_code == 404


async def test_an_edit_share_cannot_revoke_the_owners_other_shares(
    client: httpx.AsyncClient, app: Any, owner: dict[str, Any], member: dict[str, Any]
) -> None:
    other = await user(client, app, "other@example.com")
    url = f"/tasks/{owner['task']['id']}/shares"
    for email in ("member@example.com", "other@example.com"):
        await client.post(url, json={"email": email, "permission": "edit"}, headers=owner["auth"])

    response = await client.delete(f"{url}/{other['id']}", headers=member["auth"])

    assert response.status_code == 403
    assert len((await client.get(url, headers=owner["auth"])).json()) == 2


async def test_an_edit_share_cannot_take_ownership(
    client: httpx.AsyncClient, owner: dict[str, Any], member: dict[str, Any]
) -> None:
    await client.post(
        f"/tasks/{owner['task']['id']}/shares",
        json={"email": "member@example.com", "permission": "edit"},
        headers=owner["auth"],
    )

    response = await client.patch(
        f"/tasks/{owner['task']['id']}", json={"owner_id": member["id"]}, headers=member["auth"]
    )

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "owner_id"]
    task = await client.get(f"/tasks/{owner['task']['id']}", headers=owner["auth"])
    assert task.json()["owner_id"] == owner["id"]


async def test_an_owner_cannot_hand_a_task_to_someone_else(
    client: httpx.AsyncClient, owner: dict[str, Any], member: dict[str, Any]
) -> None:
    response = await client.patch(
        f"/tasks/{owner['task']['id']}", json={"owner_id": member["id"]}, headers=owner["auth"]
    )

    assert response.status_code == 422
    listed = await client.get("/tasks", headers=member["auth"])
    assert listed.json()["items"] == []


async def test_an_admin_may_hand_a_task_to_another_account(
    client: httpx.AsyncClient, app: Any, owner: dict[str, Any], member: dict[str, Any]
) -> None:
    admin = await user(client, app, "admin@example.com", "admin")

    response = await client.patch(
        f"/tasks/{owner['task']['id']}", json={"owner_id": member["id"]}, headers=admin["auth"]
    )

    assert response.status_code == 200
    assert response.json()["owner_id"] == member["id"]
    assert (
        await client.get(f"/tasks/{owner['task']['id']}", headers=owner["auth"])
    ).status_code == 404


async def test_an_admin_cannot_hand_a_task_to_no_account(
    client: httpx.AsyncClient, app: Any, owner: dict[str, Any]
) -> None:
    admin = await user(client, app, "admin@example.com", "admin")

    response = await client.patch(
        f"/tasks/{owner['task']['id']}",
        json={"owner_id": "00000000-0000-4000-8000-000000000000"},
        headers=admin["auth"],
    )

    assert response.status_code == 422
    task = await client.get(f"/tasks/{owner['task']['id']}", headers=owner["auth"])
    assert task.json()["owner_id"] == owner["id"]


async def test_a_demoted_members_old_token_cannot_create(
    client: httpx.AsyncClient, app: Any, member: dict[str, Any]
) -> None:
    admin = await user(client, app, "admin@example.com", "admin")
    await client.patch(
        f"/admin/users/{member['id']}", json={"role": "viewer"}, headers=admin["auth"]
    )

    old_token = await client.post("/tasks", json={"title": "sneaky"}, headers=member["auth"])
    new_auth = await refreshed_auth(client, member)
    new_token = await client.post("/tasks", json={"title": "sneaky"}, headers=new_auth)

    assert old_token.status_code == 401
    assert new_token.status_code == 403
    assert new_token.json()["detail"] == "role 'viewer' lacks permission CREATE"
    assert (await client.get("/tasks", headers=new_auth)).json()["items"] == []


async def test_a_viewer_with_an_edit_share_still_cannot_edit(
    client: httpx.AsyncClient, app: Any, owner: dict[str, Any]
) -> None:
    viewer = await user(client, app, "viewer@example.com", "viewer")
    await client.post(
        f"/tasks/{owner['task']['id']}/shares",
        json={"email": "viewer@example.com", "permission": "edit"},
        headers=owner["auth"],
    )

    response = await client.patch(
        f"/tasks/{owner['task']['id']}", json={"title": "viewer was here"}, headers=viewer["auth"]
    )

    assert response.status_code == 403
    assert response.json()["detail"] == "role 'viewer' lacks permission UPDATE"
