"""The guard decides each request once, in one layer, and publishes what it found in
``scope["auth"]``; a route that declares nothing is refused, whatever kind of route it
is and whenever it was added (OWASP API5:2023: deny by default)."""

# No postponed annotations: the routes below declare with a local `bastion`.

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI, Request
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from bastion.accounts import Principal
from bastion.fastapi import GuardMiddleware, GuardResult, guard_result, install
from bastion.stores import EventQuery
from tests.conftest import make_settings
from tests.helpers import user

UNDECLARED = "the route declares no security requirement"
STATE_KEYS = {"verified_token", "revocation_read", "rate_limit", "security_context", "decision"}


@pytest.fixture
async def own_app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    """A library user's app with routes of every kind, declared or not."""
    app = FastAPI()
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'own.db'}"
    bastion = install(app, make_settings(tmp_path, database_url=database_url), migrate=True)

    @app.get("/mine")
    async def mine(
        request: Request, principal: Annotated[Principal, bastion.authenticated()]
    ) -> dict[str, Any]:
        result = guard_result(request)
        assert result is not None
        return {
            "same principal": result.principal == principal,
            "route": result.route.path if result.route else None,
            "source": result.credential.source if result.credential else None,
            "decision": result.decision.status if result.decision else None,
            "state keys": sorted(STATE_KEYS & set(request.scope["state"])),
        }

    @app.get("/open", dependencies=[bastion.public("a test of public routes")])
    async def open_route() -> dict[str, str]:
        return {"open": "yes"}

    async def plain(request: Any) -> PlainTextResponse:
        return PlainTextResponse("plain route served")

    app.router.routes.append(Route("/plain", plain))
    app.mount("/mounted", Starlette(routes=[Route("/page", plain)]))
    async with LifespanManager(app):
        yield app


async def _client(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://t")


async def _denials(app: FastAPI) -> set[str]:
    await app.state.security.events.drain()
    events = await app.state.security.stores.events.query(
        EventQuery(event_type="permission_denied")
    )
    return {e.details for e in events}


def test_the_guard_is_one_layer_of_the_stack(own_app: FastAPI) -> None:
    layers = [m.cls for m in own_app.user_middleware]

    assert layers.count(GuardMiddleware) == 1
    assert {"RateLimitMiddleware", "CSRFMiddleware"}.isdisjoint(c.__name__ for c in layers)  # type: ignore[union-attr]


async def test_a_route_reads_the_published_result(own_app: FastAPI) -> None:
    async with await _client(own_app) as client:
        alice = await user(client, own_app, "alice@example.com")
        response = await client.get("/mine", headers=alice["auth"])

    assert response.status_code == 200
    assert response.json() == {
        "same principal": True,
        "route": "/mine",
        "source": "bearer",
        "decision": "allow",
        "state keys": [],
    }


async def test_a_public_route_does_not_refuse_a_bad_token(own_app: FastAPI) -> None:
    async with await _client(own_app) as client:
        response = await client.get("/open", headers={"Authorization": "Bearer not-a-token"})

    assert response.status_code == 200


async def test_a_signed_in_route_refuses_a_bad_token_before_the_route(own_app: FastAPI) -> None:
    async with await _client(own_app) as client:
        response = await client.get("/mine", headers={"Authorization": "Bearer not-a-token"})

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "path",
    ["/plain", "/mounted/page", "/mounted/nothing"],
    ids=["plain-route", "mount", "mount-404"],
)
async def test_an_undeclared_route_of_any_kind_is_refused(own_app: FastAPI, path: str) -> None:
    async with await _client(own_app) as client:
        admin = await user(client, own_app, "admin@example.com", "admin")
        anonymous = await client.get(path)
        as_admin = await client.get(path, headers=admin["auth"])

    assert anonymous.status_code == as_admin.status_code == 403
    assert "plain route served" not in anonymous.text + as_admin.text
    assert await _denials(own_app) == {UNDECLARED}


async def test_a_route_added_after_the_app_served_is_refused(own_app: FastAPI) -> None:
    async with await _client(own_app) as client:
        first = await client.get("/open")

        @own_app.get("/late")
        async def late() -> dict[str, str]:
            return {"secret": "should never be served"}

        response = await client.get("/late")

    assert first.status_code == 200
    assert response.status_code == 403
    assert "should never be served" not in response.text


async def test_an_unknown_path_still_gets_the_routers_404(own_app: FastAPI) -> None:
    async with await _client(own_app) as client:
        response = await client.get("/no-such-route")

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_the_task_service_publishes_no_security_fact_in_the_state(
    app: Any, client: httpx.AsyncClient
) -> None:
    seen: list[dict[str, Any]] = []
    inner = app.middleware_stack

    async def spy(scope: Any, receive: Any, send: Any) -> None:
        await inner(scope, receive, send)
        seen.append(scope)

    app.middleware_stack = spy
    alice = await user(client, app, "alice@example.com")
    seen.clear()
    response = await client.get("/tasks", headers=alice["auth"])

    assert response.status_code == 200
    [scope] = seen
    assert isinstance(scope["auth"], GuardResult)
    assert scope["auth"].principal.user_id.hex == alice["id"].replace("-", "")
    assert STATE_KEYS.isdisjoint(scope["state"])
