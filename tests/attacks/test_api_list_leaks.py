"""List and search never leak another user's tasks: not through filters, search,
limits, or a forged cursor (OWASP API1:2023; the access rule is applied in SQL)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from bastion.cursors import encode_cursor
from tests.helpers import user

SECRET = "Acquisition of Initech"


@pytest.fixture
async def alice(client: httpx.AsyncClient, app: Any) -> dict[str, Any]:
    pair = await user(client, app, "alice@example.com")
    pair["tasks"] = [
        (
            await client.post(
                "/tasks",
                json={"title": f"{SECRET} #{i}", "status": "in_progress"},
                headers=pair["auth"],
            )
        ).json()
        for i in range(3)
    ]
    return pair


@pytest.fixture
async def bob(client: httpx.AsyncClient, app: Any, alice: dict[str, Any]) -> dict[str, Any]:
    pair = await user(client, app, "bob@example.com")
    await client.post("/tasks", json={"title": "bob's only task"}, headers=pair["auth"])
    return pair


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"q": "Initech"},
        {"q": "%"},
        {"q": "_"},
        {"status": "in_progress"},
        {"owner_id": "ALICE"},
        {"limit": 100},
    ],
    ids=["plain", "search", "like-percent", "like-underscore", "status", "owner-filter", "limit"],
)
async def test_bobs_list_never_contains_alices_tasks(
    client: httpx.AsyncClient, alice: dict[str, Any], bob: dict[str, Any], params: dict[str, Any]
) -> None:
    params = {k: (alice["id"] if v == "ALICE" else v) for k, v in params.items()}

    response = await client.get("/tasks", params=params, headers=bob["auth"])

    assert response.status_code == 200
    assert SECRET not in response.text


async def test_a_cursor_from_alices_list_shows_bob_only_his_tasks(
    client: httpx.AsyncClient, alice: dict[str, Any], bob: dict[str, Any]
) -> None:
    page = await client.get("/tasks", params={"limit": 1}, headers=alice["auth"])
    cursor = page.json()["next_cursor"]

    response = await client.get("/tasks", params={"cursor": cursor}, headers=bob["auth"])

    assert SECRET not in response.text


async def test_a_forged_cursor_shows_bob_only_his_tasks(
    client: httpx.AsyncClient, alice: dict[str, Any], bob: dict[str, Any]
) -> None:
    forged = encode_cursor(datetime(2999, 1, 1, tzinfo=UTC), alice["tasks"][0]["id"])

    response = await client.get("/tasks", params={"cursor": forged}, headers=bob["auth"])

    assert response.status_code == 200
    assert [t["title"] for t in response.json()["items"]] == ["bob's only task"]


async def test_shares_of_alices_task_are_hidden_from_bob(
    client: httpx.AsyncClient, alice: dict[str, Any], bob: dict[str, Any]
) -> None:
    response = await client.get(f"/tasks/{alice['tasks'][0]['id']}/shares", headers=bob["auth"])

    assert response.status_code == 404


async def test_paging_alices_visible_tasks_after_a_share_is_exact(
    client: httpx.AsyncClient, alice: dict[str, Any], bob: dict[str, Any]
) -> None:
    shared = alice["tasks"][1]
    await client.post(
        f"/tasks/{shared['id']}/shares",
        json={"email": "bob@example.com", "permission": "read"},
        headers=alice["auth"],
    )
    seen: list[str] = []
    cursor = None

    while True:
        params: dict[str, Any] = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/tasks", params=params, headers=bob["auth"])).json()
        seen += [t["title"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert sorted(seen) == sorted(["bob's only task", shared["title"]])
