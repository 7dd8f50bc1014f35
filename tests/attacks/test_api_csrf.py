"""Cross-site request forgery against cookie sessions (ASVS 3.5.1-3.5.3; OWASP CSRF
Prevention Cheat Sheet): each forged request is refused, changes nothing, and is logged
as ``suspicious_activity``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from bastion.stores import EventQuery
from tests.api.test_cookie_mode import ACCESS, CSRF, REFRESH, browser, cookie_login
from tests.helpers import STRONG_PASSWORD, add_user

TASK = {"title": "forged"}


@pytest.fixture
async def victim(app: Any) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """A browser signed in to a cookie session, and that session's CSRF token."""
    email = (await add_user(app, "victim@example.com")).email
    client = browser(app)
    csrf = (await cookie_login(client, email)).json()["csrf_token"]
    yield client, csrf
    await client.aclose()


async def task_count(client: httpx.AsyncClient) -> int:
    return len((await client.get("/tasks")).json()["items"])


async def csrf_events(app: Any) -> list[Any]:
    await app.state.security.drain()
    events = await app.state.security.stores.events.query(
        EventQuery(event_type="suspicious_activity")
    )
    return [e for e in events if e.details.startswith("CSRF refused")]


def assert_csrf_refused(response: httpx.Response) -> None:
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "/problems/csrf-failed"


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-token"),
        pytest.param({"X-CSRF-Token": "forged.value"}, id="forged-token"),
        pytest.param({"X-CSRF-Token": ""}, id="empty-token"),
    ],
)
async def test_a_forged_write_without_the_token_is_refused(
    app: Any, victim: tuple[httpx.AsyncClient, str], headers: dict[str, str]
) -> None:
    client, _ = victim

    response = await client.post("/tasks", json=TASK, headers=headers)

    assert_csrf_refused(response)
    assert await task_count(client) == 0
    assert len(await csrf_events(app)) == 1


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/auth/logout"),
        ("POST", "/auth/logout-all"),
        ("POST", "/auth/password/change"),
        ("PATCH", "/users/me"),
        ("DELETE", "/auth/sessions/00000000-0000-4000-8000-000000000000"),
        ("POST", "/auth/refresh"),
    ],
)
async def test_every_state_changing_route_wants_the_token(
    victim: tuple[httpx.AsyncClient, str], method: str, path: str
) -> None:
    client, _ = victim

    response = await client.request(method, path)

    assert_csrf_refused(response)
    assert (await client.get("/users/me")).status_code == 200  # the session lives on


async def test_a_token_of_another_session_is_refused(
    app: Any, victim: tuple[httpx.AsyncClient, str]
) -> None:
    """Signed double submit: the attacker's own valid token, planted as cookie and header
    alike, is not the victim's session's token."""
    client, _ = victim
    email = (await add_user(app, "attacker@example.com")).email
    async with browser(app, ip="203.0.113.66") as attacker:
        attackers_token = (await cookie_login(attacker, email)).json()["csrf_token"]
    client.cookies.set(CSRF, attackers_token)

    response = await client.post("/tasks", json=TASK, headers={"X-CSRF-Token": attackers_token})

    assert_csrf_refused(response)
    assert await task_count(client) == 0


async def test_a_pre_session_token_does_not_pass_for_a_session(
    app: Any, victim: tuple[httpx.AsyncClient, str]
) -> None:
    client, _ = victim
    async with browser(app) as anonymous:
        pre = (await anonymous.get("/auth/csrf")).json()["csrf_token"]
    client.cookies.set(CSRF, pre)

    response = await client.post("/tasks", json=TASK, headers={"X-CSRF-Token": pre})

    assert_csrf_refused(response)


async def test_a_header_that_differs_from_the_cookie_is_refused(
    victim: tuple[httpx.AsyncClient, str],
) -> None:
    client, csrf = victim
    client.cookies.set(CSRF, "something.else")

    response = await client.post("/tasks", json=TASK, headers={"X-CSRF-Token": csrf})

    assert_csrf_refused(response)


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Sec-Fetch-Site": "cross-site"}, id="fetch-metadata-cross-site"),
        pytest.param({"Origin": "https://evil.example"}, id="foreign-origin"),
        pytest.param({"Origin": "null"}, id="null-origin"),
        pytest.param({"Origin": "https://testserver.evil.example"}, id="lookalike-origin"),
        pytest.param({"Sec-Fetch-Site": "same-site"}, id="sibling-without-origin"),
    ],
)
async def test_a_request_from_another_site_is_refused_even_with_the_token(
    app: Any, victim: tuple[httpx.AsyncClient, str], headers: dict[str, str]
) -> None:
    client, csrf = victim

    response = await client.post("/tasks", json=TASK, headers={"X-CSRF-Token": csrf, **headers})

    assert_csrf_refused(response)
    assert await task_count(client) == 0
    assert len(await csrf_events(app)) == 1


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Origin": "https://testserver"}, id="own-origin"),
        pytest.param({"Sec-Fetch-Site": "same-origin"}, id="same-origin"),
        pytest.param({"Origin": "http://127.0.0.1:8000"}, id="public-url"),
    ],
)
async def test_a_same_site_request_with_the_token_passes(
    victim: tuple[httpx.AsyncClient, str], headers: dict[str, str]
) -> None:
    client, csrf = victim

    response = await client.post("/tasks", json=TASK, headers={"X-CSRF-Token": csrf, **headers})

    assert response.status_code == 201


async def test_an_allowed_cors_origin_may_send_writes(make: Any) -> None:
    app = await make.app(cors_origins="https://app.example")
    email = (await add_user(app, "spa@example.com")).email
    async with browser(app) as client:
        csrf = (await cookie_login(client, email)).json()["csrf_token"]
        response = await client.post(
            "/tasks", json=TASK, headers={"X-CSRF-Token": csrf, "Origin": "https://app.example"}
        )

    assert response.status_code == 201


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
)
async def test_a_cors_simple_content_type_is_refused_with_415(
    victim: tuple[httpx.AsyncClient, str], content_type: str
) -> None:
    """What a cross-site form can send without a preflight never reaches a JSON route."""
    client, csrf = victim

    response = await client.post(
        "/tasks",
        content=b'{"title": "forged"}',
        headers={"X-CSRF-Token": csrf, "Content-Type": content_type},
    )

    assert response.status_code == 415
    assert response.json()["type"] == "/problems/unsupported-media-type"
    assert await task_count(client) == 0


async def test_a_safe_request_changes_nothing_and_needs_no_token(
    victim: tuple[httpx.AsyncClient, str],
) -> None:
    client, _ = victim

    before = await task_count(client)
    listed = await client.get("/tasks")

    assert listed.status_code == 200
    assert await task_count(client) == before


# -- login CSRF ---------------------------------------------------------------------------


@pytest.fixture
async def mallory(app: Any) -> str:
    return (await add_user(app, "mallory@example.com")).email


async def test_a_cookie_login_without_the_pre_session_cookie_is_refused(
    app: Any, mallory: str
) -> None:
    """Login CSRF: a page cannot sign the victim's browser in to the attacker's account."""
    async with browser(app) as attacker:
        pre = (await attacker.get("/auth/csrf")).json()["csrf_token"]
    async with browser(app) as client:
        response = await client.post(
            "/auth/login",
            json={"email": mallory, "password": STRONG_PASSWORD},
            headers={"X-CSRF-Token": pre},
        )

    assert_csrf_refused(response)
    assert ACCESS not in client.cookies
    assert len(await csrf_events(app)) == 1


async def test_a_cookie_login_with_a_session_token_is_refused(app: Any, mallory: str) -> None:
    async with browser(app) as client:
        session_token = (await cookie_login(client, mallory)).json()["csrf_token"]
        client.cookies.clear()
        client.cookies.set(CSRF, session_token)
        response = await client.post(
            "/auth/login",
            json={"email": mallory, "password": STRONG_PASSWORD},
            headers={"X-CSRF-Token": session_token},
        )

    assert_csrf_refused(response)


async def test_a_cross_site_form_login_gets_no_session(app: Any, mallory: str) -> None:
    """A form post has no custom header: it is a bearer login whose answer the other
    site cannot read, and which sets no session cookie."""
    async with browser(app) as client:
        response = await client.post(
            "/auth/login",
            data={"email": mallory, "password": STRONG_PASSWORD},
            headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        )

    assert response.status_code == 415
    assert not {ACCESS, REFRESH} & set(client.cookies.keys())


async def test_a_refresh_without_its_sessions_token_uses_nothing_up(
    app: Any, victim: tuple[httpx.AsyncClient, str]
) -> None:
    client, _ = victim
    refresh_before = client.cookies[REFRESH]
    async with browser(app) as anonymous:
        pre = (await anonymous.get("/auth/csrf")).json()["csrf_token"]
    client.cookies.set(CSRF, pre)

    response = await client.post("/auth/refresh", headers={"X-CSRF-Token": pre})

    assert_csrf_refused(response)
    assert client.cookies[REFRESH] == refresh_before


# -- the CSRF cookie itself ------------------------------------------------------------------


async def test_another_sites_navigation_to_the_token_route_gets_nothing(app: Any) -> None:
    async with browser(app) as client:
        response = await client.get("/auth/csrf", headers={"Sec-Fetch-Site": "cross-site"})

    assert_csrf_refused(response)
    assert "set-cookie" not in response.headers


async def test_a_pre_session_token_never_replaces_the_sessions_token(
    victim: tuple[httpx.AsyncClient, str],
) -> None:
    """A navigation without the session's cookies (SameSite=Strict keeps them off a
    cross-site one) asks for a token: the session's own token stays in place."""
    client, csrf = victim

    fetched = await client.get("/auth/csrf", headers={"Cookie": "unrelated=1"})
    created = await client.post("/tasks", json=TASK, headers={"X-CSRF-Token": csrf})

    assert fetched.status_code == 200
    assert client.cookies[CSRF] == csrf
    assert created.status_code == 201
