"""Broken object level authorization: user B can neither see nor touch user A's task.

OWASP API1:2023, ASVS 8.2.2; API.md: a task the caller may not see answers 404, never
403, exactly like a task that does not exist; ids are random (UUIDv4).
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.helpers import signed_up, without_request_id

TITLE = "Quarterly payroll for Alice only"

# (method, JSON body) of every /tasks/{id} operation.
OPERATIONS: dict[str, tuple[str, dict[str, Any] | None]] = {
    "GET": ("GET", None),
    "PATCH": ("PATCH", {"title": "pwned", "status": "done"}),
    "DELETE": ("DELETE", None),
}


@pytest.fixture
async def alice(client: httpx.AsyncClient) -> dict[str, Any]:
    pair = await signed_up(client, "alice@example.com")
    created = await client.post(
        "/tasks",
        json={"title": TITLE, "description": "secret", "tags": ["hr"]},
        headers=pair["auth"],
    )
    assert created.status_code == 201, created.text
    pair["task"] = created.json()
    return pair


@pytest.fixture
async def bob(client: httpx.AsyncClient) -> dict[str, Any]:
    pair = await signed_up(client, "bob@example.com")
    # Bob has a task with the same words in its title, so his searches are not empty.
    created = await client.post("/tasks", json={"title": TITLE}, headers=pair["auth"])
    assert created.status_code == 201, created.text
    pair["task"] = created.json()
    return pair


async def _call(
    client: httpx.AsyncClient, operation: str, task_id: str, user: dict[str, Any]
) -> httpx.Response:
    method, body = OPERATIONS[operation]
    return await client.request(method, f"/tasks/{task_id}", json=body, headers=user["auth"])


@pytest.mark.parametrize("operation", list(OPERATIONS), ids=list(OPERATIONS))
async def test_other_users_task_answers_404(
    client: httpx.AsyncClient, alice: dict[str, Any], bob: dict[str, Any], operation: str
) -> None:
    response = await _call(client, operation, alice["task"]["id"], bob)

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert TITLE not in response.text


@pytest.mark.parametrize("operation", list(OPERATIONS), ids=list(OPERATIONS))
async def test_other_users_task_looks_like_a_missing_one(
    client: httpx.AsyncClient, alice: dict[str, Any], bob: dict[str, Any], operation: str
) -> None:
    missing = await _call(client, operation, str(uuid.uuid4()), bob)

    response = await _call(client, operation, alice["task"]["id"], bob)

    assert response.status_code == missing.status_code == 404
    assert without_request_id(response.json()) == without_request_id(missing.json())
    assert set(response.headers) == set(missing.headers)


async def test_other_users_attempts_leave_the_task_unchanged(
    client: httpx.AsyncClient, alice: dict[str, Any], bob: dict[str, Any]
) -> None:
    for operation in OPERATIONS:
        await _call(client, operation, alice["task"]["id"], bob)

    response = await client.get(f"/tasks/{alice['task']['id']}", headers=alice["auth"])
    assert response.status_code == 200
    assert response.json() == alice["task"]


LIST_QUERIES: dict[str, dict[str, str]] = {
    "no-filter": {},
    "q-matching-the-title": {"q": "payroll"},
    "q-whole-title": {"q": TITLE},
    "q-description": {"q": "secret"},
    "status": {"status": "todo"},
    "status-and-q": {"status": "todo", "q": "Alice"},
    "owner_id-of-the-victim": {"owner_id": "VICTIM"},
    "limit-100": {"limit": "100"},
}


@pytest.mark.parametrize("query", list(LIST_QUERIES), ids=list(LIST_QUERIES))
async def test_list_never_shows_another_users_task(
    client: httpx.AsyncClient, alice: dict[str, Any], bob: dict[str, Any], query: str
) -> None:
    params = {
        name: alice["task"]["owner_id"] if value == "VICTIM" else value
        for name, value in LIST_QUERIES[query].items()
    }

    response = await client.get("/tasks", params=params, headers=bob["auth"])

    assert response.status_code == 200
    items = response.json()["items"]
    assert alice["task"]["id"] not in [item["id"] for item in items]
    assert {item["owner_id"] for item in items} <= {bob["task"]["owner_id"]}


async def test_list_with_q_finds_the_callers_own_task(
    client: httpx.AsyncClient, alice: dict[str, Any], bob: dict[str, Any]
) -> None:
    response = await client.get("/tasks", params={"q": "payroll"}, headers=bob["auth"])

    assert [item["id"] for item in response.json()["items"]] == [bob["task"]["id"]]


async def test_task_ids_are_random_uuid4(client: httpx.AsyncClient, alice: dict[str, Any]) -> None:
    responses = [
        await client.post("/tasks", json={"title": f"task {n}"}, headers=alice["auth"])
        for n in range(5)
    ]

    ids = [uuid.UUID(response.json()["id"]) for response in [*responses]]
    ids.append(uuid.UUID(alice["task"]["id"]))
    assert all(task_id.version == 4 for task_id in ids)
    assert all(task_id.variant == uuid.RFC_4122 for task_id in ids)
    assert len(set(ids)) == len(ids)
