"""Small helpers the API and attack tests share."""

from __future__ import annotations

from typing import Any

import httpx

STRONG_PASSWORD = "correct horse battery staple 42"


def without_request_id(body: dict[str, Any]) -> dict[str, Any]:
    """A problem body minus its per-request id, for comparing two answers."""
    return {name: value for name, value in body.items() if name != "request_id"}


async def register(
    client: httpx.AsyncClient, email: str, password: str = STRONG_PASSWORD, **extra: Any
) -> httpx.Response:
    return await client.post("/auth/register", json={"email": email, "password": password, **extra})


async def login(
    client: httpx.AsyncClient, email: str, password: str = STRONG_PASSWORD
) -> dict[str, Any]:
    response = await client.post("/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return dict(response.json())


async def signed_up(client: httpx.AsyncClient, email: str) -> dict[str, Any]:
    """Register and log in; return the token pair with an ``auth`` header dict added."""
    assert (await register(client, email)).status_code == 202
    pair = await login(client, email)
    pair["auth"] = {"Authorization": f"Bearer {pair['access_token']}"}
    return pair
