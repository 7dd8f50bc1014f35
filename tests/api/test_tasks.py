"""The /tasks routes: create, read, list, change, delete; validation per the contract."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.helpers import signed_up


@pytest.fixture
async def alice(client: httpx.AsyncClient) -> dict[str, Any]:
    return await signed_up(client, "alice@example.com")


async def _create(client: httpx.AsyncClient, auth: dict[str, str], **fields: Any) -> dict[str, Any]:
    response = await client.post("/tasks", json={"title": "A task", **fields}, headers=auth)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_create_returns_the_task_with_defaults(
    client: httpx.AsyncClient, alice: dict[str, Any]
) -> None:
    response = await client.post("/tasks", json={"title": "Write tests"}, headers=alice["auth"])

    assert response.status_code == 201
    task = response.json()
    assert task["title"] == "Write tests"
    assert task["status"] == "todo"
    assert task["priority"] == "medium"
    assert task["tags"] == []
    assert task["due_date"] is None
    assert task["created_at"].endswith("Z")
    me = (await client.get("/users/me", headers=alice["auth"])).json()
    assert task["owner_id"] == me["id"]


async def test_get_returns_the_stored_task(
    client: httpx.AsyncClient, alice: dict[str, Any]
) -> None:
    created = await _create(
        client,
        alice["auth"],
        tags=["x", "y"],
        priority="high",
        due_date="2026-12-01T10:00:00+02:00",
    )

    response = await client.get(f"/tasks/{created['id']}", headers=alice["auth"])

    assert response.status_code == 200
    assert response.json() == created
    assert created["due_date"] == "2026-12-01T08:00:00Z"


async def test_patch_changes_only_the_sent_fields(
    client: httpx.AsyncClient, alice: dict[str, Any]
) -> None:
    created = await _create(client, alice["auth"], priority="low")

    response = await client.patch(
        f"/tasks/{created['id']}", json={"status": "done"}, headers=alice["auth"]
    )

    assert response.status_code == 200
    task = response.json()
    assert task["status"] == "done"
    assert task["priority"] == "low"
    assert task["title"] == created["title"]
    assert task["updated_at"] >= created["updated_at"]


async def test_patch_cannot_null_a_required_field(
    client: httpx.AsyncClient, alice: dict[str, Any]
) -> None:
    created = await _create(client, alice["auth"])

    response = await client.patch(
        f"/tasks/{created['id']}", json={"title": None}, headers=alice["auth"]
    )

    assert response.status_code == 422
    stored = (await client.get(f"/tasks/{created['id']}", headers=alice["auth"])).json()
    assert stored["title"] == created["title"]


async def test_delete_removes_the_task(client: httpx.AsyncClient, alice: dict[str, Any]) -> None:
    created = await _create(client, alice["auth"])

    response = await client.delete(f"/tasks/{created['id']}", headers=alice["auth"])

    assert response.status_code == 204
    gone = await client.get(f"/tasks/{created['id']}", headers=alice["auth"])
    assert gone.status_code == 404
    assert gone.headers["content-type"] == "application/problem+json"
    assert gone.json()["type"] == "/problems/not-found"


async def test_list_pages_through_every_task_once(
    client: httpx.AsyncClient, alice: dict[str, Any]
) -> None:
    ids = {(await _create(client, alice["auth"], title=f"t{i}"))["id"] for i in range(7)}

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/tasks", params=params, headers=alice["auth"])).json()
        seen += [t["id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert len(seen) == 7
    assert set(seen) == ids


async def test_list_is_newest_first(client: httpx.AsyncClient, alice: dict[str, Any]) -> None:
    first = await _create(client, alice["auth"], title="first")
    second = await _create(client, alice["auth"], title="second")

    items = (await client.get("/tasks", headers=alice["auth"])).json()["items"]

    assert [t["id"] for t in items] == [second["id"], first["id"]]


async def test_list_filters_by_status(client: httpx.AsyncClient, alice: dict[str, Any]) -> None:
    done = await _create(client, alice["auth"], status="done")
    await _create(client, alice["auth"], status="todo")

    items = (await client.get("/tasks?status=done", headers=alice["auth"])).json()["items"]

    assert [t["id"] for t in items] == [done["id"]]


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        pytest.param("report", {"Quarterly report"}, id="substring"),
        pytest.param("REPORT", {"Quarterly report"}, id="case-insensitive"),
        pytest.param("100%", {"Reach 100% coverage"}, id="percent-is-literal"),
        pytest.param("%", {"Reach 100% coverage"}, id="lone-percent-is-literal"),
        pytest.param("_", {"snake_case names"}, id="underscore-is-literal"),
        pytest.param("' OR 1=1 --", set(), id="sql-is-data"),
    ],
)
async def test_search_matches_text_literally(
    client: httpx.AsyncClient, alice: dict[str, Any], q: str, expected: set[str]
) -> None:
    for title in ("Quarterly report", "Reach 100% coverage", "snake_case names", "Other"):
        await _create(client, alice["auth"], title=title)

    response = await client.get("/tasks", params={"q": q}, headers=alice["auth"])

    assert response.status_code == 200
    assert {t["title"] for t in response.json()["items"]} == expected


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"limit": 0}, id="limit-0"),
        pytest.param({"limit": 101}, id="limit-101"),
        pytest.param({"limit": 10000}, id="limit-10000"),
        pytest.param({"limit": "ten"}, id="limit-not-a-number"),
        pytest.param({"status": "archived"}, id="unknown-status"),
        pytest.param({"cursor": "not-a-cursor"}, id="garbage-cursor"),
        pytest.param({"q": "x" * 201}, id="q-too-long"),
    ],
)
async def test_list_refuses_bad_query(
    client: httpx.AsyncClient, alice: dict[str, Any], params: dict[str, Any]
) -> None:
    response = await client.get("/tasks", params=params, headers=alice["auth"])

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["loc"][0] == "query"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"title": ""}, "title", id="empty-title"),
        pytest.param({"title": "   "}, "title", id="blank-title"),
        pytest.param({"title": "x" * 201}, "title", id="title-201"),
        pytest.param({"title": "a\u202ebidi"}, "title", id="title-bidi-override"),
        pytest.param({"title": "nul\x00"}, "title", id="title-nul"),
        pytest.param({"title": 42}, "title", id="title-number"),
        pytest.param({"title": "t", "description": "x" * 10_001}, "description", id="long-desc"),
        pytest.param({"title": "t", "tags": ["x"] * 21}, "tags", id="21-tags"),
        pytest.param({"title": "t", "tags": ["x" * 33]}, "tags", id="tag-33"),
        pytest.param({"title": "t", "status": "archived"}, "status", id="bad-status"),
        pytest.param({"title": "t", "priority": "urgent"}, "priority", id="bad-priority"),
        pytest.param({"title": "t", "due_date": "2026-12-01T10:00:00"}, "due_date", id="naive"),
    ],
)
async def test_create_refuses_invalid_fields(
    client: httpx.AsyncClient, alice: dict[str, Any], body: dict[str, Any], field: str
) -> None:
    response = await client.post("/tasks", json=body, headers=alice["auth"])

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"][:2] == ["body", field]
    listing = (await client.get("/tasks", headers=alice["auth"])).json()
    assert listing["items"] == []


async def test_title_is_normalized_to_nfc(client: httpx.AsyncClient, alice: dict[str, Any]) -> None:
    task = await _create(client, alice["auth"], title="Cafe\u0301")

    assert task["title"] == "Caf\u00e9"


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param("<script>alert(1)</script>", id="script"),
        pytest.param('<img src=x onerror="alert(1)">', id="event-handler"),
        pytest.param('<a href="javascript:alert(1)">x</a>', id="javascript-url"),
        pytest.param('<svg onload="alert(1)"></svg>', id="svg"),
    ],
)
async def test_description_html_is_sanitized(
    client: httpx.AsyncClient, alice: dict[str, Any], payload: str
) -> None:
    task = await _create(client, alice["auth"], description=f"<p>ok</p>{payload}")

    stored = (await client.get(f"/tasks/{task['id']}", headers=alice["auth"])).json()
    lowered = stored["description"].lower()
    assert "<p>ok</p>" in lowered
    assert "script" not in lowered
    assert "onerror" not in lowered
    assert "onload" not in lowered
    assert "javascript:" not in lowered


async def test_links_keep_safe_rel(client: httpx.AsyncClient, alice: dict[str, Any]) -> None:
    task = await _create(client, alice["auth"], description='<a href="https://example.org">x</a>')

    assert 'rel="noopener noreferrer nofollow"' in task["description"]


async def test_tasks_need_a_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/tasks")

    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
