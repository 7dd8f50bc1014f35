"""Every route declares its security requirement, and a route that declares none
refuses every request (OWASP API5:2023: deny by default)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import APIRouter

from bastion.fastapi import match_route, route_table
from bastion.fastapi.routes import RouteIndex
from bastion.stores import EventQuery
from bastion_tasks import create_app
from tests.conftest import make_settings
from tests.helpers import user

# The only routes anyone may call without a token, and why.
PUBLIC = {
    "/auth/register",
    "/auth/login",
    "/auth/token",
    "/auth/refresh",
    "/auth/csrf",  # a CSRF token for the cookie mode's login
    # The emailed links: the address or the one-time token is the credential.
    "/auth/password/forgot",
    "/auth/password/reset",
    "/auth/email/verify",
    "/auth/email/verify/request",
    "/auth/unlock",
    "/auth/login/confirm",  # the sign-in link of a locked account
    "/auth/mfa/verify",  # the second step of a sign-in: the mfa_token is the credential
    "/auth/link.js",
    "/.well-known/jwks.json",
    "/healthz",
    "/readyz",
    "/metrics",  # the metrics token guards it when set (docs/metrics.md)
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/docs/assets/{name}",
    "/redoc",
}


def test_every_route_declares_a_requirement(app: Any) -> None:
    undeclared = [e.path for e in route_table(app.routes) if e.requirement is None]

    assert undeclared == []


def test_only_the_known_routes_are_public(app: Any) -> None:
    public = {e.path for e in route_table(app.routes) if e.requirement.kind == "public"}

    assert public == PUBLIC


def test_admin_routes_all_require_admin(app: Any) -> None:
    admin = [e for e in route_table(app.routes) if e.path.startswith("/admin")]

    assert admin
    assert all(e.requirement.permissions == ("ADMIN",) for e in admin)


@pytest.fixture
async def app_with_an_undeclared_route(tmp_path: Path, database_url: str) -> Any:
    application = create_app(make_settings(tmp_path, database_url=database_url))

    @application.get("/forgotten")
    async def forgotten() -> dict[str, str]:
        return {"secret": "should never be served"}

    async with LifespanManager(application):
        yield application


async def test_a_route_without_declaration_refuses_everyone(
    app_with_an_undeclared_route: Any,
) -> None:
    application = app_with_an_undeclared_route
    transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        admin = await user(client, application, "admin@example.com", "admin")

        anonymous = await client.get("/forgotten")
        as_admin = await client.get("/forgotten", headers=admin["auth"])

    assert anonymous.status_code == as_admin.status_code == 403
    assert "should never be served" not in anonymous.text + as_admin.text
    await application.state.security.events.drain()
    events = await application.state.security.stores.events.query(
        EventQuery(event_type="permission_denied")
    )
    assert {e.details for e in events} == {"the route declares no security requirement"}


def test_the_openapi_schema_documents_each_protected_routes_bearer_scheme(app: Any) -> None:
    schema = app.openapi()

    operation = schema["paths"]["/tasks/{task_id}"]["delete"]
    assert operation["security"] == [{"OAuth2PasswordBearer": []}]
    assert "404" in operation["responses"]


def test_the_route_index_finds_what_the_whole_table_finds(app: Any) -> None:
    """The rate limiter's index (by first path segment) answers as the whole table."""
    table = route_table(app.routes)
    index = RouteIndex(table)
    paths = [e.path.replace("{", "").replace("}", "") for e in table]
    paths += ["/", "", "/nope", "/tasks/", "/tasks/x/y", "//tasks", "/auth", "relative"]
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "get"]

    answers = [(index.match(m, p), match_route(table, m, p)) for p in paths for m in methods]

    assert all(a[0] is b[0] and a[1:] == b[1:] for a, b in answers)
    assert {status for (_, _, status), _ in answers} == {200, 404, 405}


def test_the_route_index_keeps_a_parameter_first_segment_in_every_bucket() -> None:
    router = APIRouter()
    for path in ("/tasks/{task_id}", "/{anything}/x", "/tasks/x"):
        router.add_api_route(path, _endpoint, methods=["GET"])
    entries = route_table(router.routes)
    index = RouteIndex(entries)

    assert index.match("GET", "/tasks/x")[0] is entries[0]  # the table's order wins
    assert index.match("GET", "/other/x")[0] is entries[1]
    assert index.match("POST", "/other/x")[2] == 405
    assert index.match("GET", "/tasks/x/y")[2] == 404


async def _endpoint() -> None:
    return None
