"""The cookie mode for browsers: the token pair in ``__Host-`` cookies, a CSRF token
for every state-changing request, and bearer clients unaffected."""

from __future__ import annotations

from http.cookies import SimpleCookie
from typing import Any

import httpx
import pytest

from tests.helpers import STRONG_PASSWORD, add_user

ACCESS, REFRESH, CSRF = "__Host-bastion-access", "__Host-bastion-refresh", "__Host-bastion-csrf"


def browser(app: Any, ip: str = "198.51.100.20") -> httpx.AsyncClient:
    """A client over https, as a browser would be (``Secure`` cookies only go there)."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(ip, 4711))
    return httpx.AsyncClient(transport=transport, base_url="https://testserver")


def set_cookies(response: httpx.Response) -> dict[str, str]:
    """Each ``Set-Cookie`` of a response, by cookie name, as sent."""
    return {header.split("=", 1)[0]: header for header in response.headers.get_list("set-cookie")}


def attributes(header: str) -> dict[str, str]:
    cookie = SimpleCookie()
    cookie.load(header)
    [morsel] = cookie.values()
    return {k.lower(): str(v) for k, v in morsel.items() if v}


async def cookie_login(client: httpx.AsyncClient, email: str) -> httpx.Response:
    pre = (await client.get("/auth/csrf")).json()["csrf_token"]
    return await client.post(
        "/auth/login",
        json={"email": email, "password": STRONG_PASSWORD},
        headers={"X-CSRF-Token": pre},
    )


@pytest.fixture
async def alice(app: Any) -> str:
    account = await add_user(app, "alice@example.com")
    return account.email


async def test_a_cookie_login_puts_the_tokens_into_cookies_not_the_body(
    app: Any, alice: str
) -> None:
    async with browser(app) as client:
        response = await cookie_login(client, alice)

    body = response.json()
    assert response.status_code == 200
    assert body["token_type"] == "cookie"
    assert set(body) == {"token_type", "csrf_token", "expires_in", "refresh_expires_in"}
    assert {ACCESS, REFRESH, CSRF} <= set(set_cookies(response))
    assert set_cookies(response)[CSRF].split(";")[0] == f"{CSRF}={body['csrf_token']}"


@pytest.mark.parametrize("name", [ACCESS, REFRESH, CSRF])
async def test_session_cookies_are_host_only_secure_and_strict(
    app: Any, alice: str, name: str
) -> None:
    async with browser(app) as client:
        response = await cookie_login(client, alice)

    header = set_cookies(response)[name]
    flags = attributes(header)
    assert flags["secure"]
    assert flags["samesite"] == "strict"
    assert flags["path"] == "/"
    assert "domain" not in flags
    assert bool(flags.get("httponly")) is (name != CSRF)  # scripts read the CSRF token only
    assert len(header.split(";")[0]) <= 4096


async def test_a_cookie_session_reads_and_writes_with_its_csrf_token(app: Any, alice: str) -> None:
    async with browser(app) as client:
        csrf = (await cookie_login(client, alice)).json()["csrf_token"]
        me = await client.get("/users/me")
        created = await client.post(
            "/tasks", json={"title": "from the browser"}, headers={"X-CSRF-Token": csrf}
        )

    assert me.status_code == 200
    assert me.json()["email"] == alice
    assert created.status_code == 201


async def test_a_cookie_refresh_rotates_the_cookies_and_keeps_the_session(
    app: Any, alice: str
) -> None:
    async with browser(app) as client:
        login = await cookie_login(client, alice)
        old_refresh = client.cookies[REFRESH]
        csrf = login.json()["csrf_token"]
        refreshed = await client.post("/auth/refresh", headers={"X-CSRF-Token": csrf})
        new_csrf = refreshed.json()["csrf_token"]
        me = await client.get("/users/me")
        created = await client.post(
            "/tasks", json={"title": "after refresh"}, headers={"X-CSRF-Token": new_csrf}
        )

    assert refreshed.status_code == 200
    assert client.cookies[REFRESH] != old_refresh
    assert (me.status_code, created.status_code) == (200, 201)


async def test_a_cookie_logout_ends_the_session_and_clears_the_cookies(
    app: Any, alice: str
) -> None:
    async with browser(app) as client:
        csrf = (await cookie_login(client, alice)).json()["csrf_token"]
        access, refresh = client.cookies[ACCESS], client.cookies[REFRESH]
        logout = await client.post("/auth/logout", headers={"X-CSRF-Token": csrf})
        cleared = set_cookies(logout)
        client.cookies.set(ACCESS, access)
        client.cookies.set(REFRESH, refresh)
        client.cookies.set(CSRF, csrf)
        again = await client.get("/users/me")
        reused = await client.post("/auth/refresh", headers={"X-CSRF-Token": csrf})

    assert logout.status_code == 204
    assert {ACCESS, REFRESH, CSRF} <= set(cleared)
    assert all(attributes(cleared[name]).get("max-age") == "0" for name in (ACCESS, REFRESH))
    assert again.status_code == 401
    assert reused.status_code == 401


async def test_a_bearer_login_is_unchanged_and_sets_no_session_cookie(app: Any, alice: str) -> None:
    async with browser(app) as client:
        response = await client.post(
            "/auth/login", json={"email": alice, "password": STRONG_PASSWORD}
        )

    assert response.status_code == 200
    assert response.json()["token_type"] == "bearer"
    assert not {ACCESS, REFRESH, CSRF} & set(set_cookies(response))


async def test_a_bearer_request_needs_no_csrf_token_even_with_session_cookies(
    app: Any, alice: str
) -> None:
    async with browser(app) as other:
        pair = (
            await other.post("/auth/login", json={"email": alice, "password": STRONG_PASSWORD})
        ).json()
    async with browser(app) as client:
        await cookie_login(client, alice)
        created = await client.post(
            "/tasks",
            json={"title": "bearer"},
            headers={"Authorization": f"Bearer {pair['access_token']}"},
        )

    assert created.status_code == 201


async def test_plain_http_development_cookies_drop_the_prefix_and_secure(make: Any) -> None:
    app = await make.app(cookie_secure=False)
    email = (await add_user(app, "dev@example.com")).email
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await cookie_login(client, email)
        me = await client.get("/users/me")

    cookies = set_cookies(response)
    assert response.status_code == 200
    assert {"bastion-access", "bastion-refresh", "bastion-csrf"} <= set(cookies)
    assert not attributes(cookies["bastion-access"]).get("secure")
    assert me.status_code == 200


async def test_the_token_route_gives_the_sessions_token_for_the_sessions_lifetime(
    app: Any, alice: str
) -> None:
    async with browser(app) as client:
        csrf = (await cookie_login(client, alice)).json()["csrf_token"]
        again = await client.get("/auth/csrf")

    assert again.json()["csrf_token"] != csrf  # a new one, for the same session
    assert attributes(set_cookies(again)[CSRF])["max-age"] == str(30 * 86400)


async def test_with_an_expired_access_cookie_the_token_route_still_finds_the_session(
    app: Any, alice: str
) -> None:
    async with browser(app) as client:
        await cookie_login(client, alice)
        client.cookies.delete(ACCESS)
        csrf = (await client.get("/auth/csrf")).json()["csrf_token"]
        refreshed = await client.post("/auth/refresh", headers={"X-CSRF-Token": csrf})

    assert refreshed.status_code == 200
