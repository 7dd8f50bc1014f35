"""Method and path tampering never reach a route around its check (OWASP API5:2023):
HEAD, OPTIONS, TRACE, ``X-HTTP-Method-Override``, a trailing slash, another case, an
encoded path."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.helpers import user


@pytest.fixture
async def member(client: httpx.AsyncClient, app: Any) -> dict[str, Any]:
    return await user(client, app, "member@example.com")


@pytest.fixture
async def victim(client: httpx.AsyncClient, app: Any) -> dict[str, Any]:
    pair = await user(client, app, "victim@example.com")
    created = await client.post("/tasks", json={"title": "keep me"}, headers=pair["auth"])
    pair["task"] = created.json()
    return pair


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS", "TRACE", "PUT", "CONNECT"])
async def test_other_methods_on_an_admin_route_are_refused(
    client: httpx.AsyncClient, member: dict[str, Any], method: str
) -> None:
    response = await client.request(method, "/admin/users", headers=member["auth"])

    assert response.status_code == 405
    assert "member@example.com" not in response.text


@pytest.mark.parametrize("override", ["GET", "DELETE", "PATCH"])
async def test_method_override_header_is_ignored(
    client: httpx.AsyncClient, member: dict[str, Any], victim: dict[str, Any], override: str
) -> None:
    response = await client.post(
        f"/tasks/{victim['task']['id']}",
        headers={**member["auth"], "X-HTTP-Method-Override": override},
    )

    assert response.status_code == 405
    still = await client.get(f"/tasks/{victim['task']['id']}", headers=victim["auth"])
    assert still.json()["title"] == "keep me"


async def test_method_override_cannot_turn_a_read_into_a_delete(
    client: httpx.AsyncClient, victim: dict[str, Any], member: dict[str, Any]
) -> None:
    for header in ("X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"):
        await client.get(
            f"/tasks/{victim['task']['id']}", headers={**member["auth"], header: "DELETE"}
        )

    still = await client.get(f"/tasks/{victim['task']['id']}", headers=victim["auth"])
    assert still.status_code == 200


@pytest.mark.parametrize(
    "path",
    ["/admin/users/", "/ADMIN/users", "/Admin/Users", "//admin/users", "/admin//users"],
)
async def test_path_variants_of_an_admin_route_are_not_found(
    client: httpx.AsyncClient, member: dict[str, Any], path: str
) -> None:
    response = await client.get(path, headers=member["auth"])

    assert response.status_code == 404
    assert "location" not in response.headers


async def test_trailing_slash_does_not_redirect_around_a_check(
    client: httpx.AsyncClient, member: dict[str, Any]
) -> None:
    response = await client.get("/tasks/", headers=member["auth"], follow_redirects=False)

    assert response.status_code == 404


async def test_an_encoded_path_reaches_the_route_and_its_check(
    client: httpx.AsyncClient, member: dict[str, Any]
) -> None:
    response = await client.get("/admin/%75sers", headers=member["auth"])

    assert response.status_code == 403
    assert response.json()["detail"] == "role 'member' lacks permission ADMIN"


async def test_head_on_a_task_of_another_user_leaks_nothing(
    client: httpx.AsyncClient, member: dict[str, Any], victim: dict[str, Any]
) -> None:
    response = await client.head(f"/tasks/{victim['task']['id']}", headers=member["auth"])

    assert response.status_code == 405
    assert response.content == b""
