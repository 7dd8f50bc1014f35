"""Sharing a task by email, read or edit; owner or admin only; no account enumeration."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import httpx
import pytest

from tests.helpers import register, signed_up, user, without_request_id


@pytest.fixture
async def owner(client: httpx.AsyncClient, app: Any) -> dict[str, Any]:
    pair = await user(client, app, "owner@example.com")
    created = await client.post("/tasks", json={"title": "shared plan"}, headers=pair["auth"])
    pair["task"] = created.json()
    return pair


@pytest.fixture
async def friend(client: httpx.AsyncClient, app: Any) -> dict[str, Any]:
    return await user(client, app, "friend@example.com")


async def _share(
    client: httpx.AsyncClient, owner: dict[str, Any], email: str, permission: str
) -> httpx.Response:
    return await client.post(
        f"/tasks/{owner['task']['id']}/shares",
        json={"email": email, "permission": permission},
        headers=owner["auth"],
    )


async def test_sharing_answers_the_users_id_and_permission(
    client: httpx.AsyncClient, owner: dict[str, Any], friend: dict[str, Any]
) -> None:
    response = await _share(client, owner, "Friend@Example.com", "read")

    assert response.status_code == 201
    assert response.json() == {"user_id": friend["id"], "permission": "read"}


async def test_a_read_share_lets_the_user_read_but_not_change(
    client: httpx.AsyncClient, owner: dict[str, Any], friend: dict[str, Any]
) -> None:
    await _share(client, owner, "friend@example.com", "read")
    url = f"/tasks/{owner['task']['id']}"

    read = await client.get(url, headers=friend["auth"])
    changed = await client.patch(url, json={"title": "mine now"}, headers=friend["auth"])

    assert read.status_code == 200
    assert read.json()["title"] == "shared plan"
    assert changed.status_code == 403
    assert changed.json()["detail"] == "to change a task takes edit or owner; the user has read"


async def test_an_edit_share_lets_the_user_change_but_not_delete(
    client: httpx.AsyncClient, owner: dict[str, Any], friend: dict[str, Any]
) -> None:
    await _share(client, owner, "friend@example.com", "edit")
    url = f"/tasks/{owner['task']['id']}"

    changed = await client.patch(url, json={"status": "done"}, headers=friend["auth"])
    deleted = await client.delete(url, headers=friend["auth"])

    assert changed.status_code == 200
    assert changed.json()["status"] == "done"
    assert changed.json()["owner_id"] == owner["id"]
    assert deleted.status_code == 403


async def test_shared_tasks_appear_in_the_users_list(
    client: httpx.AsyncClient, owner: dict[str, Any], friend: dict[str, Any]
) -> None:
    own = await client.post("/tasks", json={"title": "friend's own"}, headers=friend["auth"])
    await _share(client, owner, "friend@example.com", "read")

    listed = await client.get("/tasks", headers=friend["auth"])

    assert {t["id"] for t in listed.json()["items"]} == {own.json()["id"], owner["task"]["id"]}


async def test_sharing_again_changes_the_permission(
    client: httpx.AsyncClient, owner: dict[str, Any], friend: dict[str, Any]
) -> None:
    await _share(client, owner, "friend@example.com", "read")
    await _share(client, owner, "friend@example.com", "edit")

    shares = await client.get(f"/tasks/{owner['task']['id']}/shares", headers=owner["auth"])

    assert shares.json() == [{"user_id": friend["id"], "permission": "edit"}]


async def test_unsharing_hides_the_task_again(
    client: httpx.AsyncClient, owner: dict[str, Any], friend: dict[str, Any]
) -> None:
    await _share(client, owner, "friend@example.com", "read")

    response = await client.delete(
        f"/tasks/{owner['task']['id']}/shares/{friend['id']}", headers=owner["auth"]
    )

    assert response.status_code == 204
    hidden = await client.get(f"/tasks/{owner['task']['id']}", headers=friend["auth"])
    assert hidden.status_code == 404


async def test_unsharing_a_user_it_is_not_shared_with_is_404(
    client: httpx.AsyncClient, owner: dict[str, Any], friend: dict[str, Any]
) -> None:
    response = await client.delete(
        f"/tasks/{owner['task']['id']}/shares/{friend['id']}", headers=owner["auth"]
    )

    assert response.status_code == 404


async def test_deleting_the_task_deletes_its_shares(
    client: httpx.AsyncClient, owner: dict[str, Any], friend: dict[str, Any]
) -> None:
    await _share(client, owner, "friend@example.com", "read")

    await client.delete(f"/tasks/{owner['task']['id']}", headers=owner["auth"])

    listed = await client.get("/tasks", headers=friend["auth"])
    assert listed.json()["items"] == []


async def test_an_unknown_email_gets_the_same_answer_as_a_known_one(
    client: httpx.AsyncClient, owner: dict[str, Any], friend: dict[str, Any]
) -> None:
    known = await _share(client, owner, "friend@example.com", "read")
    unknown = await _share(client, owner, "stranger@example.com", "read")

    assert known.status_code == unknown.status_code == 201
    assert set(known.json()) == set(unknown.json())
    assert set(known.headers) == set(unknown.headers)
    assert unknown.json()["user_id"] != friend["id"]


async def test_a_share_with_an_unregistered_email_stays_pending_after_sign_up(
    client: httpx.AsyncClient, owner: dict[str, Any]
) -> None:
    pending = await _share(client, owner, "Later@Example.com", "edit")

    # Whoever registers the address first has not shown it is theirs: nothing yet.
    later = await signed_up(client, "later@example.com")

    me = await client.get("/users/me", headers=later["auth"])
    assert me.json()["id"] == pending.json()["user_id"]
    task = await client.get(f"/tasks/{owner['task']['id']}", headers=later["auth"])
    assert task.status_code == 404
    assert (await client.get("/tasks", headers=later["auth"])).json()["items"] == []


async def test_a_pending_share_is_listed_like_any_other(
    client: httpx.AsyncClient, owner: dict[str, Any], friend: dict[str, Any]
) -> None:
    await _share(client, owner, "friend@example.com", "read")
    pending = await _share(client, owner, "later@example.com", "read")

    shares = await client.get(f"/tasks/{owner['task']['id']}/shares", headers=owner["auth"])

    assert shares.json() == [
        {"user_id": friend["id"], "permission": "read"},
        pending.json(),
    ]


async def test_refusing_a_share_with_the_owner_reserves_nothing(
    client: httpx.AsyncClient, app: Any, owner: dict[str, Any]
) -> None:
    await _share(client, owner, "OWNER@example.com", "read")

    accounts = app.state.security.stores.accounts
    assert await accounts.resolve_id("owner@example.com", reserve=False) == (
        UUID(owner["id"]),
        True,
    )


async def test_registration_of_a_shared_email_still_answers_202_once(
    client: httpx.AsyncClient, owner: dict[str, Any]
) -> None:
    await _share(client, owner, "later@example.com", "read")

    first = await register(client, "later@example.com")
    second = await register(client, "later@example.com")

    assert first.status_code == second.status_code == 202
    assert without_request_id(first.json()) == without_request_id(second.json())


@pytest.mark.parametrize(
    "body",
    [
        {"email": "not-an-email", "permission": "read"},
        {"email": "friend@example.com", "permission": "owner"},
        {"email": "friend@example.com", "permission": "READ"},
        {"email": "friend@example.com"},
    ],
    ids=["bad-email", "owner-permission", "case", "no-permission"],
)
async def test_share_refuses_invalid_input(
    client: httpx.AsyncClient, owner: dict[str, Any], body: dict[str, Any]
) -> None:
    response = await client.post(
        f"/tasks/{owner['task']['id']}/shares", json=body, headers=owner["auth"]
    )

    assert response.status_code == 422


async def test_sharing_with_the_owner_is_refused(
    client: httpx.AsyncClient, owner: dict[str, Any]
) -> None:
    response = await _share(client, owner, "owner@example.com", "read")

    assert response.status_code == 422
    assert response.json()["errors"][0]["msg"] == "the task's owner has it already"


async def test_an_admin_may_share_any_task(
    client: httpx.AsyncClient, app: Any, owner: dict[str, Any], friend: dict[str, Any]
) -> None:
    admin = await user(client, app, "admin@example.com", "admin")

    response = await client.post(
        f"/tasks/{owner['task']['id']}/shares",
        json={"email": "friend@example.com", "permission": "read"},
        headers=admin["auth"],
    )

    assert response.status_code == 201
    assert (
        await client.get(f"/tasks/{owner['task']['id']}", headers=friend["auth"])
    ).status_code == 200
