"""The /admin user routes: list, change role or active flag, revoke sessions, decisions.

Every change is a security event stored in the same transaction as the change; a
demotion or a disabled account takes effect on the very next request.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import httpx
import pytest

from bastion.stores import EventQuery, UserState
from bastion.testing import capture_events
from tests.helpers import STRONG_PASSWORD, refreshed_auth, user


@pytest.fixture
async def admin(client: httpx.AsyncClient, app: Any) -> dict[str, Any]:
    return await user(client, app, "admin@example.com", "admin")


@pytest.fixture
async def member(client: httpx.AsyncClient, app: Any) -> dict[str, Any]:
    return await user(client, app, "member@example.com")


async def _stored(app: Any, event_type: str) -> list[Any]:
    await app.state.security.events.drain()
    return list(await app.state.security.stores.events.query(EventQuery(event_type=event_type)))


async def test_list_users_pages_through_every_account_once(
    client: httpx.AsyncClient, app: Any, admin: dict[str, Any]
) -> None:
    for i in range(4):
        await user(client, app, f"user{i}@example.com")
    seen: list[str] = []
    cursor = None

    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = await client.get("/admin/users", params=params, headers=admin["auth"])
        assert page.status_code == 200
        seen += [item["email"] for item in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break

    assert sorted(seen) == sorted(
        ["admin@example.com"] + [f"user{i}@example.com" for i in range(4)]
    )


async def test_list_users_shows_no_secret(client: httpx.AsyncClient, admin: dict[str, Any]) -> None:
    response = await client.get("/admin/users", headers=admin["auth"])

    [item] = response.json()["items"]
    assert set(item) == {
        "id",
        "email",
        "display_name",
        "role",
        "is_active",
        "email_verified",
        "mfa_enabled",
        "locked_at",
        "created_at",
        "updated_at",
    }
    assert "argon2" not in response.text


async def test_list_users_filters_by_role(
    client: httpx.AsyncClient, admin: dict[str, Any], member: dict[str, Any]
) -> None:
    response = await client.get("/admin/users", params={"role": "member"}, headers=admin["auth"])

    assert [i["email"] for i in response.json()["items"]] == ["member@example.com"]


async def test_list_users_refuses_a_forged_cursor(
    client: httpx.AsyncClient, admin: dict[str, Any]
) -> None:
    response = await client.get(
        "/admin/users", params={"cursor": "not-a-cursor"}, headers=admin["auth"]
    )

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["query", "cursor"]


async def test_role_change_is_stored_with_its_event(
    client: httpx.AsyncClient, app: Any, admin: dict[str, Any], member: dict[str, Any]
) -> None:
    response = await client.patch(
        f"/admin/users/{member['id']}", json={"role": "admin"}, headers=admin["auth"]
    )

    assert response.status_code == 200
    assert response.json()["role"] == "admin"
    [event] = await _stored(app, "role_changed")
    assert event.user_id == admin["id"]
    assert event.severity == "high"
    assert event.extra["target_user_id"] == member["id"]
    assert (event.extra["old_role"], event.extra["new_role"]) == ("member", "admin")


async def test_a_role_change_ends_the_access_tokens_issued_for_the_old_role(
    client: httpx.AsyncClient, admin: dict[str, Any], member: dict[str, Any]
) -> None:
    await client.patch(
        f"/admin/users/{member['id']}", json={"role": "viewer"}, headers=admin["auth"]
    )

    with capture_events() as events:
        response = await client.get("/users/me", headers=member["auth"])

    assert response.status_code == 401
    assert [e.details for e in events] == ["access token refused (token version revoked)"]


async def test_promoted_member_is_an_admin_after_a_refresh(
    client: httpx.AsyncClient, admin: dict[str, Any], member: dict[str, Any]
) -> None:
    await client.patch(
        f"/admin/users/{member['id']}", json={"role": "admin"}, headers=admin["auth"]
    )

    response = await client.get("/admin/users", headers=await refreshed_auth(client, member))

    assert response.status_code == 200


async def test_demoted_admin_is_no_admin_after_a_refresh(
    client: httpx.AsyncClient, app: Any, admin: dict[str, Any]
) -> None:
    other = await user(client, app, "other-admin@example.com", "admin")
    await client.patch(
        f"/admin/users/{other['id']}", json={"role": "member"}, headers=admin["auth"]
    )

    response = await client.get("/admin/users", headers=await refreshed_auth(client, other))

    assert response.status_code == 403
    assert response.json()["detail"] == "role 'member' lacks permission ADMIN"


async def test_a_login_racing_a_demotion_cannot_cache_the_old_role(
    client: httpx.AsyncClient, app: Any, admin: dict[str, Any]
) -> None:
    other = await user(client, app, "other-admin@example.com", "admin")
    security = app.state.security
    stale = await security.stores.accounts.get(UUID(other["id"]))
    await client.patch(
        f"/admin/users/{other['id']}", json={"role": "member"}, headers=admin["auth"]
    )

    # What a login that read the account before the demotion writes after it.
    await security.stores.revocation.put_user_state(
        other["id"], UserState(stale.token_version, stale.role, stale.is_active)
    )

    assert (await client.get("/admin/users", headers=other["auth"])).status_code == 401
    response = await client.get("/admin/users", headers=await refreshed_auth(client, other))
    assert response.status_code == 403


async def test_disabling_an_account_refuses_its_tokens_at_once(
    client: httpx.AsyncClient, admin: dict[str, Any], member: dict[str, Any]
) -> None:
    response = await client.patch(
        f"/admin/users/{member['id']}", json={"is_active": False}, headers=admin["auth"]
    )

    assert response.status_code == 200
    assert (await client.get("/users/me", headers=member["auth"])).status_code == 401
    refreshed = await client.post("/auth/refresh", json={"refresh_token": member["refresh_token"]})
    assert refreshed.status_code == 401


async def test_disabled_account_cannot_log_in_and_enabled_one_can(
    client: httpx.AsyncClient, admin: dict[str, Any], member: dict[str, Any]
) -> None:
    credentials = {"email": "member@example.com", "password": STRONG_PASSWORD}
    url = f"/admin/users/{member['id']}"
    await client.patch(url, json={"is_active": False}, headers=admin["auth"])
    refused = await client.post("/auth/login", json=credentials)

    await client.patch(url, json={"is_active": True}, headers=admin["auth"])
    accepted = await client.post("/auth/login", json=credentials)

    assert refused.status_code == 401
    assert accepted.status_code == 200


async def test_disabling_and_enabling_are_events(
    client: httpx.AsyncClient, app: Any, admin: dict[str, Any], member: dict[str, Any]
) -> None:
    url = f"/admin/users/{member['id']}"
    await client.patch(url, json={"is_active": False}, headers=admin["auth"])
    await client.patch(url, json={"is_active": True}, headers=admin["auth"])

    assert len(await _stored(app, "account_disabled")) == 1
    assert len(await _stored(app, "account_enabled")) == 1


async def test_an_admin_cannot_demote_the_last_admin(
    client: httpx.AsyncClient, app: Any, admin: dict[str, Any]
) -> None:
    response = await client.patch(
        f"/admin/users/{admin['id']}", json={"role": "member"}, headers=admin["auth"]
    )

    assert response.status_code == 409
    assert response.json()["type"] == "/problems/last-admin"
    me = await client.get("/users/me", headers=admin["auth"])
    assert me.json()["role"] == "admin"
    assert await _stored(app, "role_changed") == []


async def test_an_admin_cannot_disable_the_last_admin(
    client: httpx.AsyncClient, admin: dict[str, Any]
) -> None:
    response = await client.patch(
        f"/admin/users/{admin['id']}", json={"is_active": False}, headers=admin["auth"]
    )

    assert response.status_code == 409
    assert (await client.get("/users/me", headers=admin["auth"])).status_code == 200


async def test_an_admin_may_step_down_when_another_admin_remains(
    client: httpx.AsyncClient, app: Any, admin: dict[str, Any]
) -> None:
    await user(client, app, "second-admin@example.com", "admin")

    response = await client.patch(
        f"/admin/users/{admin['id']}", json={"role": "member"}, headers=admin["auth"]
    )

    assert response.status_code == 200
    response = await client.get("/admin/users", headers=await refreshed_auth(client, admin))
    assert response.status_code == 403


async def test_patching_an_unknown_user_is_404(
    client: httpx.AsyncClient, admin: dict[str, Any]
) -> None:
    response = await client.patch(
        "/admin/users/00000000-0000-4000-8000-000000000000",
        json={"role": "member"},
        headers=admin["auth"],
    )

    assert response.status_code == 404


@pytest.mark.parametrize(
    "body",
    [{"role": "root"}, {"role": "Admin"}, {"is_active": "false"}, {"is_active": 0}],
    ids=["unknown-role", "role-case", "string-bool", "int-bool"],
)
async def test_patch_refuses_invalid_values(
    client: httpx.AsyncClient, admin: dict[str, Any], member: dict[str, Any], body: dict[str, Any]
) -> None:
    response = await client.patch(f"/admin/users/{member['id']}", json=body, headers=admin["auth"])

    assert response.status_code == 422


async def test_revoke_sessions_ends_every_session_of_the_user(
    client: httpx.AsyncClient, app: Any, admin: dict[str, Any], member: dict[str, Any]
) -> None:
    response = await client.post(
        f"/admin/users/{member['id']}/revoke-sessions", headers=admin["auth"]
    )

    assert response.status_code == 204
    assert (await client.get("/users/me", headers=member["auth"])).status_code == 401
    refreshed = await client.post("/auth/refresh", json={"refresh_token": member["refresh_token"]})
    assert refreshed.status_code == 401
    [event] = await _stored(app, "sessions_revoked")
    assert event.extra["target_user_id"] == member["id"]
    assert (await client.get("/users/me", headers=admin["auth"])).status_code == 200


async def _decision(
    client: httpx.AsyncClient, admin: dict[str, Any], user_id: str, method: str, path: str
) -> httpx.Response:
    return await client.get(
        "/admin/security/decision",
        params={"user_id": user_id, "method": method, "path": path},
        headers=admin["auth"],
    )


async def test_decision_explains_an_allow(
    client: httpx.AsyncClient, admin: dict[str, Any], member: dict[str, Any]
) -> None:
    response = await _decision(client, admin, member["id"], "POST", "/tasks")

    assert response.status_code == 200
    assert response.json() == {
        "status": "allow",
        "reason": "role 'member' holds CREATE",
        "user_id": member["id"],
        "role": "member",
        "permissions_checked": ["CREATE"],
        "rate_limit_remaining": None,
        "warnings": [],
    }


async def test_decision_says_a_route_needs_step_up(
    client: httpx.AsyncClient, admin: dict[str, Any], member: dict[str, Any]
) -> None:
    response = await _decision(client, admin, member["id"], "POST", "/auth/password/change")

    assert response.json()["status"] == "allow"
    assert response.json()["reason"] == "signed-in account; step-up: a sign-in within 300 s"


async def test_decision_explains_a_deny(
    client: httpx.AsyncClient, admin: dict[str, Any], member: dict[str, Any]
) -> None:
    response = await _decision(client, admin, member["id"], "GET", "/admin/users")

    assert response.json()["status"] == "deny"
    assert response.json()["reason"] == "role 'member' lacks permission ADMIN"
    assert response.json()["permissions_checked"] == ["ADMIN"]


async def test_decision_checks_the_object_as_the_route_would(
    client: httpx.AsyncClient, app: Any, admin: dict[str, Any], member: dict[str, Any]
) -> None:
    other = await user(client, app, "other@example.com")
    task = (await client.post("/tasks", json={"title": "x"}, headers=other["auth"])).json()

    answers = {}
    for method in ("GET", "DELETE"):
        response = await _decision(client, admin, member["id"], method, f"/tasks/{task['id']}")
        answers[method] = response.json()

    assert answers["GET"]["status"] == "deny"
    assert answers["GET"]["reason"] == "the task is neither owned by nor shared with the user"
    assert answers["DELETE"]["status"] == "deny"


@pytest.mark.parametrize(
    ("method", "path", "reason"),
    [
        ("GET", "/nowhere", "no such route"),
        ("PUT", "/tasks", "method PUT not allowed"),
        ("get", "/tasks", "method get not allowed"),
        ("GET", "/TASKS", "no such route"),
        ("GET", "/tasks/", "no such route"),
    ],
)
async def test_decision_for_a_request_no_route_takes(
    client: httpx.AsyncClient,
    admin: dict[str, Any],
    member: dict[str, Any],
    method: str,
    path: str,
    reason: str,
) -> None:
    response = await _decision(client, admin, member["id"], method, path)

    assert response.json()["status"] == "deny"
    assert response.json()["reason"] == reason


async def test_decision_for_a_disabled_user_is_deny(
    client: httpx.AsyncClient, admin: dict[str, Any], member: dict[str, Any]
) -> None:
    await client.patch(
        f"/admin/users/{member['id']}", json={"is_active": False}, headers=admin["auth"]
    )

    response = await _decision(client, admin, member["id"], "GET", "/users/me")

    assert response.json()["status"] == "deny"
    assert response.json()["reason"] == "the account is disabled"
