"""Attacks on the one-layer guard of a library user's app: reaching a route without what
it declares, or a route that declares nothing (OWASP API5:2023, broken function level
authorization; deny by default).

- A route with several declarations (a router's "signed in" and the route's "ADMIN", an
  ``include_router`` requirement, two declared parameters) must satisfy all of them:
  a member calling it is refused, an admin is served.
- Routes of kinds the guard's table does not hold (an HTTPEndpoint route without methods,
  a root mount, a mount inside a prefixed router, a host route, a route added to an
  included router after the app started serving) are refused like any undeclared one.
- A route class of the app's own whose matching differs from FastAPI's (a
  case-insensitive route, by its ``matches`` or by its regex) is decided on the route it
  reaches, not on a later public route its path also fits; one whose matching raises is
  refused; a route replaced in place in a live route list (by an equal one too) is
  decided on its own declarations.
- The app served under a root path (mounted in another app, or behind
  ``uvicorn --root-path``) keeps every decision.
- WebSocket handshakes are refused: no WebSocket route can declare a requirement yet.
- ``install(prefix=...)``: the link pages post to, and load their script from, the prefix.
"""

# No postponed annotations: the routes below declare with a local `bastion`.

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.applications import Starlette
from starlette.endpoints import HTTPEndpoint
from starlette.responses import PlainTextResponse
from starlette.routing import Host, Mount, Route

from bastion.accounts import Principal
from bastion.authz import Permission
from bastion.fastapi import Bastion, install
from tests.conftest import make_settings
from tests.helpers import user

SERVED = "served"


class _Endpoint(HTTPEndpoint):
    async def get(self, request: Any) -> PlainTextResponse:
        return PlainTextResponse(SERVED)

    async def post(self, request: Any) -> PlainTextResponse:
        return PlainTextResponse(SERVED)


async def _plain(request: Any) -> PlainTextResponse:
    return PlainTextResponse(SERVED)


def _install(app: FastAPI, tmp_path: Path, prefix: str = "") -> Bastion:
    """Bastion on ``app``, on a SQLite file of this test's own, migrated on start."""
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'own.db'}"
    settings = make_settings(tmp_path, database_url=database_url)
    return install(app, settings, migrate=True, prefix=prefix)


def _own_app(tmp_path: Path, prefix: str = "") -> tuple[FastAPI, APIRouter]:
    app = FastAPI()
    bastion = _install(app, tmp_path, prefix)
    admin = Annotated[Principal, bastion.require(Permission.ADMIN)]
    signed_in = Annotated[Principal, bastion.authenticated()]

    # A router that needs a signed-in caller, and a route of it that needs ADMIN.
    staff = APIRouter(prefix="/staff", dependencies=[bastion.authenticated()])

    @staff.delete("/thing")
    async def delete_thing(principal: admin) -> dict[str, str]:
        return {SERVED: principal.role}

    app.include_router(staff)

    # The requirement given where the router is included.
    included = APIRouter()

    @included.get("/report")
    async def report(principal: signed_in) -> dict[str, str]:
        return {SERVED: principal.role}

    admins_only = [bastion.require(Permission.ADMIN)]
    app.include_router(included, prefix="/included", dependencies=admins_only)

    # Two declared parameters.
    @app.get("/both")
    async def both(caller: signed_in, boss: admin) -> dict[str, str]:
        return {SERVED: boss.role}

    # Routes of kinds the route table does not model; none declares anything.
    app.router.routes.append(Route("/endpoint", _Endpoint))
    api = APIRouter()
    api.routes.append(Mount("/files", app=Starlette(routes=[Route("/{name}", _plain)])))
    app.include_router(api, prefix="/api")
    app.router.routes.append(
        Host("internal.example.com", app=Starlette(routes=[Route("/secret", _plain)]))
    )
    late = APIRouter(prefix="/late")

    @late.get("/early", dependencies=[bastion.public("a public route")])
    async def early() -> dict[str, str]:
        return {SERVED: "early"}

    app.include_router(late)

    @app.websocket("/ws")
    async def ws(websocket: Any) -> None:
        await websocket.accept()
        await websocket.send_text(SERVED)
        await websocket.close()

    app.mount("/", Starlette(routes=[Route("/{rest:path}", _plain)]))  # last: a catch-all
    return app, late


@pytest.fixture
async def own_app(tmp_path: Path) -> AsyncIterator[tuple[FastAPI, APIRouter]]:
    app, late = _own_app(tmp_path)
    async with LifespanManager(app):
        yield app, late


def _client(app: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://t")


@pytest.mark.parametrize(
    ("method", "path"),
    [("DELETE", "/staff/thing"), ("GET", "/included/report"), ("GET", "/both")],
)
async def test_every_declaration_of_a_route_must_hold(
    own_app: tuple[FastAPI, APIRouter], method: str, path: str
) -> None:
    app, _ = own_app
    async with _client(app) as client:
        member = await user(client, app, "member@example.com")
        boss = await user(client, app, "boss@example.com", role="admin")
        refused = await client.request(method, path, headers=member["auth"])
        anonymous = await client.request(method, path)
        served = await client.request(method, path, headers=boss["auth"])

    assert refused.status_code == 403
    assert SERVED not in refused.text
    assert anonymous.status_code == 401
    assert served.status_code == 200
    assert served.json() == {SERVED: "admin"}


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/endpoint", {}),
        ("POST", "/endpoint", {}),
        ("GET", "/api/files/secret.txt", {}),
        ("GET", "/secret", {"host": "internal.example.com"}),
        ("GET", "/anything/under/the/root/mount", {}),
    ],
)
async def test_routes_the_table_does_not_model_are_refused(
    own_app: tuple[FastAPI, APIRouter], method: str, path: str, headers: dict[str, str]
) -> None:
    app, _ = own_app
    async with _client(app) as client:
        boss = await user(client, app, "boss@example.com", role="admin")
        anonymous = await client.request(method, path, headers=headers)
        signed_in = await client.request(method, path, headers={**headers, **boss["auth"]})

    for response in (anonymous, signed_in):
        assert response.status_code == 403, (path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert SERVED not in response.text


async def test_a_route_added_to_an_included_router_after_start_is_refused(
    own_app: tuple[FastAPI, APIRouter],
) -> None:
    app, late = own_app
    async with _client(app) as client:
        first = await client.get("/late/early")  # the route table is compiled now

        @late.get("/added")
        async def added() -> dict[str, str]:
            return {SERVED: "late"}

        response = await client.get("/late/added")

    assert first.status_code == 200
    assert response.status_code == 403
    assert SERVED not in response.text


async def test_a_router_included_after_start_is_decided_by_its_declarations(
    own_app: tuple[FastAPI, APIRouter],
) -> None:
    """A router included into an included router while the app serves: its routes are
    decided by what they declare (a stale table would refuse the public one and could
    not tell the admin-only one from another)."""
    app, late = own_app
    bastion = app.state.bastion
    async with _client(app) as client:
        member = await user(client, app, "member@example.com")
        boss = await user(client, app, "boss@example.com", role="admin")
        assert (await client.get("/late/early")).status_code == 200  # table compiled

        nested = APIRouter(prefix="/nested")

        @nested.get("/open", dependencies=[bastion.public("a public route")])
        async def open_route() -> dict[str, str]:
            return {SERVED: "open"}

        @nested.get("/staff", dependencies=[bastion.require(Permission.ADMIN)])
        async def staff_route() -> dict[str, str]:
            return {SERVED: "staff"}

        late.include_router(nested)
        public = await client.get("/late/nested/open")
        refused = await client.get("/late/nested/staff", headers=member["auth"])
        served = await client.get("/late/nested/staff", headers=boss["auth"])

    assert public.status_code == 200
    assert refused.status_code == 403
    assert SERVED not in refused.text
    assert served.json() == {SERVED: "staff"}


class _CaseInsensitiveRoute(APIRoute):
    """A route class as some apps write it: matches its path in any letter case."""

    def matches(self, scope: Any) -> Any:
        return super().matches({**scope, "path": scope["path"].lower()})


def _app_with_own_route_class(tmp_path: Path) -> FastAPI:
    app = FastAPI()
    bastion = _install(app, tmp_path)
    insensitive = APIRouter(route_class=_CaseInsensitiveRoute)

    @insensitive.get("/secret")  # declares nothing
    async def secret() -> dict[str, str]:
        return {SERVED: "secret"}

    @insensitive.get("/hello", dependencies=[bastion.public("a public route")])
    async def hello() -> dict[str, str]:
        return {SERVED: "hello"}

    app.include_router(insensitive, prefix="/own")

    @app.get("/own/{name}", dependencies=[bastion.public("profile pages")])
    async def profile(name: str) -> dict[str, str]:
        return {"profile": name}

    return app


@pytest.mark.parametrize("path", ["/own/secret", "/own/SECRET", "/own/Secret"])
async def test_a_route_class_of_its_own_is_decided_on_the_route_it_reaches(
    tmp_path: Path, path: str
) -> None:
    app = _app_with_own_route_class(tmp_path)
    async with LifespanManager(app), _client(app) as client:
        response = await client.get(path)
        public = await client.get("/own/HELLO")
        profile = await client.get("/own/alice")

    assert response.status_code == 403, response.text
    assert SERVED not in response.text
    assert public.json() == {SERVED: "hello"}  # its own declaration still counts
    assert profile.json() == {"profile": "alice"}


class _CaseInsensitiveRegexRoute(APIRoute):
    """The same, by its compiled regex (``matches`` itself is FastAPI's)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.path_regex = re.compile(self.path_regex.pattern, re.IGNORECASE)


class _RaisingRoute(APIRoute):
    """A route class whose matching fails for some requests."""

    def matches(self, scope: Any) -> Any:
        if scope["path"].startswith("/boom"):
            raise ValueError("cannot match")
        return super().matches(scope)


async def test_a_route_class_with_a_regex_of_its_own_is_decided_on_its_route(
    tmp_path: Path,
) -> None:
    app = FastAPI()
    bastion = _install(app, tmp_path)
    app.router.route_class = _CaseInsensitiveRegexRoute

    @app.get("/secret")  # declares nothing
    async def secret() -> dict[str, str]:
        return {SERVED: "secret"}

    @app.get("/{name}", dependencies=[bastion.public("profile pages")])
    async def profile(name: str) -> dict[str, str]:
        return {"profile": name}

    async with LifespanManager(app), _client(app) as client:
        responses = [await client.get(path) for path in ("/secret", "/SECRET", "/Secret")]
        public = await client.get("/alice")

    for response in responses:
        assert response.status_code == 403, response.text
        assert SERVED not in response.text
    assert public.json() == {"profile": "alice"}


async def test_a_route_whose_matching_raises_is_refused_whatever_it_declares(
    tmp_path: Path,
) -> None:
    app = FastAPI()
    bastion = _install(app, tmp_path)
    raising = APIRouter(route_class=_RaisingRoute)

    @raising.get("/boom/{rest}", dependencies=[bastion.public("declared public")])
    async def boom(rest: str) -> dict[str, str]:
        return {SERVED: rest}

    app.include_router(raising)
    async with LifespanManager(app), _client(app) as client:
        response = await client.get("/boom/x")

    assert response.status_code == 403, response.text
    assert SERVED not in response.text


async def test_a_route_replaced_by_an_equal_one_is_seen(
    own_app: tuple[FastAPI, APIRouter],
) -> None:
    """Starlette's routes compare equal by path, endpoint and methods: an equal route of
    another class that declares nothing replaces a public one."""
    app, _ = own_app
    bastion = app.state.bastion

    async def page() -> dict[str, str]:
        return {SERVED: "page"}

    app.add_api_route("/page", page, methods=["GET"], dependencies=[bastion.public("public")])
    top = app.router.routes
    top.insert(0, top.pop())  # before the catch-all mount
    async with _client(app) as client:
        assert (await client.get("/page")).json() == {SERVED: "page"}  # table compiled
        index = next(i for i, r in enumerate(top) if getattr(r, "path", "") == "/page")
        top[index] = _CaseInsensitiveRoute("/page", page, methods=["GET"])  # equal, undeclared
        assert top[index] == APIRoute("/page", page, methods=["GET"])
        responses = [await client.get(path) for path in ("/page", "/PAGE")]

    for response in responses:
        assert response.status_code == 403, response.text
        assert SERVED not in response.text


async def test_a_route_replaced_in_place_is_decided_on_its_own_declarations(
    own_app: tuple[FastAPI, APIRouter],
) -> None:
    """Assigning into a live route list changes neither its length nor FastAPI's count
    of changes: the guard must still decide on the route that is served."""
    app, late = own_app

    async def replaced() -> dict[str, str]:
        return {SERVED: "replaced"}

    async with _client(app) as client:
        assert (await client.get("/late/early")).status_code == 200  # table compiled
        early = "/late/early"  # the router's prefix is in its routes' paths
        index = next(i for i, r in enumerate(late.routes) if getattr(r, "path", "") == early)
        late.routes[index] = APIRoute(early, replaced, methods=["GET"])  # undeclared
        nested = await client.get("/late/early")
        top = app.router.routes
        both = next(i for i, r in enumerate(top) if getattr(r, "path", "") == "/both")
        top[both] = APIRoute("/both", replaced, methods=["GET"])  # was signed-in, admin
        anonymous = await client.get("/both")

    # FastAPI serves an included router from its own copy until the router counts a
    # change: there the old, public route may still answer, but never the new one.
    assert "replaced" not in nested.text
    assert anonymous.status_code == 403, anonymous.text
    assert SERVED not in anonymous.text


async def test_a_root_path_keeps_every_decision(own_app: tuple[FastAPI, APIRouter]) -> None:
    app, _ = own_app
    outer = Starlette(routes=[Mount("/v1", app=app)])
    async with _client(app) as direct:
        member = await user(direct, app, "member@example.com")
    async with _client(outer) as client:
        undeclared = await client.get("/v1/endpoint")
        staff = await client.delete("/v1/staff/thing", headers=member["auth"])
        public = await client.get("/v1/late/early")
        login = await client.post(
            "/v1/auth/login", json={"email": "member@example.com", "password": "x" * 20}
        )

    assert undeclared.status_code == 403
    assert staff.status_code == 403
    assert public.status_code == 200  # not refused as undeclared under the root path
    assert login.status_code == 401  # reached: a wrong password, not "undeclared"


async def test_websocket_handshakes_are_refused(own_app: tuple[FastAPI, APIRouter]) -> None:
    app, _ = own_app
    incoming = [{"type": "websocket.connect"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "path": "/ws",
        "raw_path": b"/ws",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"t"), (b"origin", b"https://evil.example")],
        "client": ("127.0.0.1", 50000),
        "server": ("t", 80),
        "subprotocols": [],
    }
    await app(scope, receive, send)

    assert sent == [{"type": "websocket.close", "code": 1008}]  # the server answers 403


async def test_link_pages_follow_the_prefix(tmp_path: Path) -> None:
    app, _ = _own_app(tmp_path, prefix="/api")
    async with LifespanManager(app), _client(app) as client:
        page = await client.get("/api/auth/password/reset")
        script = await client.get("/api/auth/link.js")

    assert page.status_code == 200
    assert 'data-action="/api/auth/password/reset"' in page.text
    assert '<script src="/api/auth/link.js">' in page.text
    assert script.status_code == 200


def _shadowing_app(tmp_path: Path) -> FastAPI:
    """Routes of kinds the table does not model, each placed before a declared route
    that would also match: the router dispatches to the first, which declares nothing."""
    app = FastAPI()
    # A host route before install(): ahead of Bastion's own routes, on every path.
    app.host("internal.example.com", Starlette(routes=[Route("/{rest:path}", _plain)]))
    bastion = _install(app, tmp_path)
    v1 = APIRouter()
    v1.add_route("/ops/purge", _Endpoint)  # an HTTPEndpoint inside an included router
    v1.routes.append(Mount("/files", app=Starlette(routes=[Route("/{name}", _plain)])))
    app.include_router(v1, prefix="/v1")

    @app.websocket("/chat")
    async def chat(websocket: Any) -> None:
        await websocket.close()

    @app.get("/chat", dependencies=[bastion.public("the chat page")])
    async def chat_page() -> dict[str, str]:
        return {"page": "chat"}

    @app.api_route(
        "/{rest:path}",
        methods=["GET", "DELETE"],
        dependencies=[bastion.public("the single-page application")],
    )
    async def spa(rest: str) -> dict[str, str]:
        return {"spa": rest}

    return app


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/healthz", {"host": "internal.example.com"}),
        ("GET", "/auth/jwks.json", {"host": "internal.example.com"}),
        ("DELETE", "/v1/ops/purge", {}),
        ("GET", "/v1/files/db.txt", {}),
    ],
)
async def test_an_undeclared_route_before_a_public_one_is_refused(
    tmp_path: Path, method: str, path: str, headers: dict[str, str]
) -> None:
    app = _shadowing_app(tmp_path)
    async with LifespanManager(app), _client(app) as client:
        response = await client.request(method, path, headers=headers)
        spa = await client.get("/some/page")
        chat = await client.get("/chat")
        health = await client.get("/healthz")

    assert response.status_code == 403, response.text
    assert SERVED not in response.text
    assert spa.json() == {"spa": "some/page"}  # the public catch-all itself is served
    assert chat.json() == {"page": "chat"}  # a WebSocket route does not shadow HTTP
    assert health.json() == {"status": "ok"}
