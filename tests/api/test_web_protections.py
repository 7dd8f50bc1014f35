"""Content types (415), CORS, allowed hosts and the security headers of every response."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from bastion.fastapi.middleware import RequestContextMiddleware
from tests.helpers import STRONG_PASSWORD, add_user, user

# -- 415 --------------------------------------------------------------------------------


@pytest.fixture
async def member(client: httpx.AsyncClient, app: Any) -> dict[str, Any]:
    return await user(client, app, "member@example.com")


@pytest.mark.parametrize(
    "content_type",
    [
        pytest.param("text/plain", id="text"),
        pytest.param("application/x-www-form-urlencoded", id="form"),
        pytest.param("multipart/form-data; boundary=x", id="multipart"),
        pytest.param("application/xml", id="xml"),
        pytest.param("application/json; charset=latin-1", id="json-latin-1"),
        pytest.param("application/jsonx", id="lookalike"),
        pytest.param(None, id="none"),
    ],
)
async def test_a_json_route_refuses_another_content_type(
    client: httpx.AsyncClient, member: dict[str, Any], content_type: str | None
) -> None:
    headers = dict(member["auth"])
    if content_type is not None:
        headers["Content-Type"] = content_type

    response = await client.post("/tasks", content=b'{"title": "t"}', headers=headers)

    assert response.status_code == 415
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "/problems/unsupported-media-type"
    assert (await client.get("/tasks", headers=member["auth"])).json()["items"] == []


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"]
)
async def test_a_json_route_takes_json(
    client: httpx.AsyncClient, member: dict[str, Any], content_type: str
) -> None:
    response = await client.post(
        "/tasks",
        content=b'{"title": "t"}',
        headers={**member["auth"], "Content-Type": content_type},
    )

    assert response.status_code == 201


async def test_the_oauth_form_route_refuses_json(client: httpx.AsyncClient, app: Any) -> None:
    await add_user(app, "form@example.com")

    as_json = await client.post(
        "/auth/token", json={"username": "form@example.com", "password": STRONG_PASSWORD}
    )
    as_form = await client.post(
        "/auth/token", data={"username": "form@example.com", "password": STRONG_PASSWORD}
    )

    assert as_json.status_code == 415
    assert as_form.status_code == 200


async def test_a_route_without_a_body_refuses_a_text_body(
    client: httpx.AsyncClient, member: dict[str, Any]
) -> None:
    response = await client.post(
        "/auth/logout-all",
        content=b"x",
        headers={**member["auth"], "Content-Type": "text/plain"},
    )

    assert response.status_code == 415
    assert (await client.get("/users/me", headers=member["auth"])).status_code == 200


# -- CORS -------------------------------------------------------------------------------

PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type, x-csrf-token",
}


async def test_without_allowed_origins_no_cors_header_is_sent(client: httpx.AsyncClient) -> None:
    simple = await client.get("/healthz", headers={"Origin": "https://evil.example"})
    preflight = await client.options(
        "/tasks", headers={"Origin": "https://evil.example", **PREFLIGHT}
    )

    assert "access-control-allow-origin" not in simple.headers
    assert "access-control-allow-origin" not in preflight.headers
    assert preflight.status_code == 405


@pytest.fixture
async def cors_client(make: Any) -> httpx.AsyncClient:
    app = await make.app(cors_origins="https://app.example,http://localhost:5173")
    return await make.client(app)


async def test_an_allowed_origin_gets_its_own_origin_back(cors_client: httpx.AsyncClient) -> None:
    preflight = await cors_client.options(
        "/tasks", headers={"Origin": "https://app.example", **PREFLIGHT}
    )
    simple = await cors_client.get("/healthz", headers={"Origin": "https://app.example"})

    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert preflight.headers["access-control-allow-credentials"] == "true"
    assert "x-csrf-token" in preflight.headers["access-control-allow-headers"].lower()
    assert simple.headers["access-control-allow-origin"] == "https://app.example"
    assert "origin" in simple.headers["vary"].lower()
    assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "https://app.example.evil.example",
        "http://app.example",
        "https://app.example:8443",
        "null",
    ],
)
async def test_an_unlisted_origin_is_never_reflected(
    cors_client: httpx.AsyncClient, origin: str
) -> None:
    preflight = await cors_client.options("/tasks", headers={"Origin": origin, **PREFLIGHT})
    simple = await cors_client.get(
        "/healthz", headers={"Origin": origin, "Cookie": "__Host-bastion-access=x"}
    )

    assert preflight.status_code == 403
    assert preflight.headers["content-type"] == "application/problem+json"
    assert "access-control-allow-origin" not in preflight.headers
    assert "access-control-allow-origin" not in simple.headers


async def test_a_wildcard_origin_never_goes_with_credentials(make: Any) -> None:
    app = await make.app(cors_origins="*")
    client = await make.client(app)

    response = await client.get(
        "/healthz",
        headers={"Origin": "https://evil.example", "Cookie": "__Host-bastion-access=x"},
    )

    assert response.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in response.headers


# -- allowed hosts ----------------------------------------------------------------------


@pytest.fixture
async def hosts_client(make: Any) -> httpx.AsyncClient:
    app = await make.app(allowed_hosts="api.example.com,*.tenants.example.com")
    return await make.client(app)


@pytest.mark.parametrize(
    "host", ["api.example.com", "API.example.com:443", "a.tenants.example.com", "api.example.com."]
)
async def test_an_allowed_host_is_served(hosts_client: httpx.AsyncClient, host: str) -> None:
    response = await hosts_client.get("/healthz", headers={"Host": host})

    assert response.status_code == 200


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "api.example.com.evil.example",
        "tenants.example.com",
        "xtenants.example.com",
        "127.0.0.1",
        "",
        "api.example.com:1@evil.example",
        "api.example.com:443:1",
        "api.example.com/path",
        "[api.example.com]",
    ],
)
async def test_another_host_is_refused(hosts_client: httpx.AsyncClient, host: str) -> None:
    response = await hosts_client.get("/healthz", headers={"Host": host})

    assert response.status_code == 400
    assert response.json()["type"] == "/problems/invalid-host"
    assert response.headers["x-content-type-options"] == "nosniff"


# -- headers ----------------------------------------------------------------------------

API_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-site",
    "permissions-policy": "geolocation=(), camera=(), microphone=()",
}


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        pytest.param("GET", "/users/me", {}, 200, id="ok"),
        pytest.param("POST", "/tasks", {"json": {}}, 422, id="invalid"),
        pytest.param("POST", "/tasks", {"content": b"x"}, 415, id="media-type"),
        pytest.param("GET", "/tasks/not-a-uuid", {}, 404, id="bad-id"),
        pytest.param("GET", "/nowhere", {}, 404, id="no-route"),
        pytest.param("PUT", "/tasks", {}, 405, id="method"),
        pytest.param("POST", "/tasks", {"content": b"x" * (2 << 20)}, 413, id="too-large"),
        pytest.param("POST", "/auth/logout-all", {}, 204, id="no-content"),
    ],
)
async def test_every_json_response_carries_the_api_headers(
    client: httpx.AsyncClient,
    member: dict[str, Any],
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
) -> None:
    response = await client.request(method, path, headers=member["auth"], **kwargs)

    assert response.status_code == status
    for name, value in API_HEADERS.items():
        assert response.headers[name] == value, name
    assert response.headers["content-security-policy"] == (
        "default-src 'none'; frame-ancestors 'none'"
    )
    assert response.headers["cache-control"] == "no-store"
    assert "server" not in response.headers
    assert "x-powered-by" not in response.headers
    assert "strict-transport-security" not in response.headers  # development


async def test_hsts_is_sent_in_production() -> None:
    async def ok(request: Any) -> JSONResponse:
        return JSONResponse({})

    app = RequestContextMiddleware(Starlette(routes=[Route("/", ok)]), hsts=True)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://t") as client:
        response = await client.get("/")

    max_age = response.headers["strict-transport-security"].split(";")[0]
    assert int(max_age.removeprefix("max-age=")) >= 365 * 86400
    assert "includeSubDomains" in response.headers["strict-transport-security"]


async def test_an_error_on_a_docs_path_is_not_cached(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs/assets/no-such-file.js")

    assert response.status_code == 404
    assert response.headers["cache-control"] == "no-store"
