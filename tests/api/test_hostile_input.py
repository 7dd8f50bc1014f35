"""Hostile input on the task and admin routes gets a clear 4xx, never a 500, and the
events about it are kept whatever their size."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from bastion.stores import EventQuery
from tests.helpers import user


def _cursor(payload: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


BAD_CURSORS = {
    "int-id": _cursor(["2026-01-01T00:00:00+00:00", 5]),
    "list-id": _cursor(["2026-01-01T00:00:00+00:00", ["x"]]),
    "int-time": _cursor([5, "00000000-0000-4000-8000-000000000000"]),
    "overflow-high": _cursor(["9999-12-31T23:59:59-14:00", "00000000-0000-4000-8000-000000000000"]),
    "overflow-low": _cursor(["0001-01-01T00:00:00+14:00", "00000000-0000-4000-8000-000000000000"]),
    "three-items": _cursor(["2026-01-01T00:00:00+00:00", "x", "y"]),
    "object": _cursor({"a": 1}),
    "deep": _cursor([[[[[[[[[[]]]]]]]]]]),
}


@pytest.fixture
async def admin(client: httpx.AsyncClient, app: Any) -> dict[str, Any]:
    return await user(client, app, "admin@example.com", "admin")


@pytest.mark.parametrize("route", ["/tasks", "/admin/users"])
@pytest.mark.parametrize("cursor", list(BAD_CURSORS.values()), ids=list(BAD_CURSORS))
async def test_a_malformed_cursor_is_a_422(
    client: httpx.AsyncClient, admin: dict[str, Any], route: str, cursor: str
) -> None:
    response = await client.get(route, params={"cursor": cursor}, headers=admin["auth"])

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["query", "cursor"]


@pytest.mark.parametrize(
    "q", ["a\x00b", "\x1b[31m", "line\nbreak"], ids=["nul", "escape", "newline"]
)
async def test_a_search_with_control_characters_is_a_422(
    client: httpx.AsyncClient, admin: dict[str, Any], q: str
) -> None:
    response = await client.get("/tasks", params={"q": q}, headers=admin["auth"])

    assert response.status_code == 422


@pytest.mark.parametrize(
    "due_date", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"], ids=["high", "low"]
)
async def test_a_due_date_out_of_range_is_a_422(
    client: httpx.AsyncClient, admin: dict[str, Any], due_date: str
) -> None:
    created = await client.post(
        "/tasks", json={"title": "t", "due_date": due_date}, headers=admin["auth"]
    )

    assert created.status_code == 422


async def test_events_about_a_very_long_path_are_kept(client: httpx.AsyncClient, app: Any) -> None:
    member = await user(client, app, "member@example.com")
    long_id = "a" * 5000

    refused = await client.patch(f"/admin/users/{long_id}", json={}, headers=member["auth"])
    anonymous = await client.get(f"/tasks/{long_id}")

    assert (refused.status_code, anonymous.status_code) == (403, 401)
    await app.state.security.events.drain()
    stored = await app.state.security.stores.events.query(EventQuery())
    kinds = [e.event_type for e in stored]
    assert kinds.count("permission_denied") == 1
    assert kinds.count("auth_failure") == 1
    assert all(len(e.endpoint or "") <= 512 for e in stored)
