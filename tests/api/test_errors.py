"""RFC 9457 problems from every layer, request ids and headers on every response."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from bastion_tasks import create_app
from tests.conftest import make_settings

PROBLEM = "application/problem+json"


def _assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM
    body = dict(response.json())
    assert body["type"] == f"/problems/{slug}"
    assert body["status"] == status
    assert body["title"]
    assert body["request_id"] == response.headers["x-request-id"]
    return body


async def test_unknown_route_is_a_404_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/no/such/route")

    _assert_problem(response, 404, "not-found")


async def test_wrong_method_is_a_405_problem(client: httpx.AsyncClient) -> None:
    response = await client.put("/auth/login", json={})

    _assert_problem(response, 405, "method-not-allowed")
    assert "allow" in response.headers


async def test_malformed_json_is_a_422_problem(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/auth/login", content=b'{"email": ', headers={"content-type": "application/json"}
    )

    _assert_problem(response, 422, "validation-error")


async def test_unknown_field_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/auth/login", json={"email": "a@example.com", "password": "x", "admin": True}
    )

    body = _assert_problem(response, 422, "validation-error")
    assert body["errors"][0]["loc"] == ["body", "admin"]


async def test_declared_oversized_body_is_a_413_problem(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/auth/login",
        content=b"{" + b" " * (2 * 1024 * 1024) + b"}",
        headers={"content-type": "application/json"},
    )

    _assert_problem(response, 413, "payload-too-large")


async def test_streamed_oversized_body_is_a_413_problem(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b" " * 65536

    response = await client.post(
        "/auth/login", content=chunks(), headers={"content-type": "application/json"}
    )

    _assert_problem(response, 413, "payload-too-large")


@pytest.fixture
async def crashing_client(tmp_path: Path, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(tmp_path, database_url=database_url))

    @app.get("/boom", dependencies=[app.state.guard.public("a route that crashes")])
    async def boom() -> None:
        raise RuntimeError("secret detail /srv/app.py SELECT password_hash FROM accounts")

    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            yield c


async def test_unhandled_error_is_a_500_problem_without_details(
    crashing_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = await crashing_client.get("/boom")

    body = _assert_problem(response, 500, "internal-error")
    assert set(body) == {"type", "title", "status", "request_id"}
    assert "secret detail" not in response.text
    assert "SELECT" not in response.text
    assert response.headers["x-content-type-options"] == "nosniff"
    logged = [r for r in caplog.records if body["request_id"] in r.getMessage()]
    assert logged
    assert logged[0].exc_info is not None


async def test_service_keeps_serving_after_an_unhandled_error(
    crashing_client: httpx.AsyncClient,
) -> None:
    await crashing_client.get("/boom")

    response = await crashing_client.get("/healthz")

    assert response.status_code == 200


async def test_every_response_has_a_request_id(client: httpx.AsyncClient) -> None:
    ids = {(await client.get("/healthz")).headers["x-request-id"] for _ in range(3)}

    assert len(ids) == 3


async def test_a_safe_client_request_id_is_kept(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": "client-abc-12345"})

    assert response.headers["x-request-id"] == "client-abc-12345"


@pytest.mark.parametrize(
    "sent",
    [
        pytest.param("<script>alert(1)</script>", id="markup"),
        pytest.param("a" * 200, id="too-long"),
        pytest.param("id\r\nSet-Cookie: x=1", id="header-injection"),
        pytest.param("short", id="too-short"),
    ],
)
async def test_an_unsafe_client_request_id_is_replaced(
    client: httpx.AsyncClient, sent: str
) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": sent.replace("\r\n", " ")})

    assert response.headers["x-request-id"] != sent.replace("\r\n", " ")
    assert len(response.headers["x-request-id"]) == 24


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
        ("content-security-policy", "default-src 'none'; frame-ancestors 'none'"),
        ("cache-control", "no-store"),
        ("cross-origin-opener-policy", "same-origin"),
    ],
)
@pytest.mark.parametrize("path", ["/healthz", "/tasks", "/nowhere"])
async def test_security_headers_on_every_response(
    client: httpx.AsyncClient, path: str, header: str, value: str
) -> None:
    response = await client.get(path)

    assert response.headers[header] == value
    assert "server" not in response.headers


async def test_readyz_reports_the_dependencies(client: httpx.AsyncClient, backend: str) -> None:
    response = await client.get("/readyz")

    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "revocation_store": "ok"}


async def test_readyz_is_503_when_redis_is_unreachable(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(tmp_path, database_url=database_url, redis_url="redis://127.0.0.1:1/0")
    app = create_app(settings)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            response = await c.get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"]["revocation_store"] == "unavailable"


async def test_jwks_publishes_only_public_keys(client: httpx.AsyncClient) -> None:
    response = await client.get("/.well-known/jwks.json")

    assert response.status_code == 200
    keys = response.json()["keys"]
    assert len(keys) == 1
    assert keys[0]["kid"]
    assert keys[0]["alg"] == "EdDSA"
    assert "d" not in keys[0]
