"""Attack: send every cookie and header the service reads malformed (bytes that are not
ASCII or not UTF-8, huge, empty, repeated) to the routes that read them, hoping for a
500 and a traceback per request. Refused: each is read as absent or invalid; the answer
is a 4xx problem or the route's own success, never a 5xx, and nothing is logged with a
traceback."""

from __future__ import annotations

import logging

import httpx
import pytest

from tests.conftest import STRONG_PASSWORD, AppMaker
from tests.helpers import add_user, login

COOKIES = [
    "__Host-bastion-access",
    "__Host-bastion-refresh",
    "__Host-bastion-csrf",
    "__Host-bastion-csrf-login",
    "__Host-bastion-device",
]
HEADERS = [
    "authorization",
    "x-csrf-token",
    "origin",
    "sec-fetch-site",
    "x-request-id",
    "user-agent",
    "content-type",
    "x-forwarded-for",
    "forwarded",
    "x-real-ip",
    "accept",
    "referer",
]
VALUES = {
    "utf8": "é\u2013€🔑".encode(),
    "latin1": b"\xe9\xff\xfe",
    "nul-free-controls": b"a\x01\x7fb",
    "empty": b"",
    "huge": b"A" * 8000,
    "bearer-non-ascii": b"Bearer \xc3\xa9.\xff.\xfe",
    "quoted": b'"\\"',
}
# What a browser in cookie mode and an API client send, with a body each route takes.
REQUESTS = [
    ("POST", "/auth/login", {"email": "owner@example.com", "password": "wrong password 1234"}),
    ("POST", "/auth/login", {"email": "owner@example.com", "password": STRONG_PASSWORD}),
    ("POST", "/auth/refresh", {"refresh_token": "x"}),
    ("POST", "/auth/logout", {}),
    ("GET", "/users/me", None),
    ("POST", "/tasks", {"title": "t"}),
    ("GET", "/auth/csrf", None),
]


def _request(
    method: str, path: str, body: object, extra: list[tuple[bytes, bytes]]
) -> httpx.Request:
    headers: list[tuple[bytes, bytes]] = []
    content = b""
    if body is not None:
        content = httpx.Request("POST", "http://x", json=body).content
        headers.append((b"content-type", b"application/json"))
    return httpx.Request(
        method, f"https://testserver{path}", headers=[*headers, *extra], content=content or None
    )


def _cases(real: dict[str, str]) -> list[tuple[str, list[tuple[bytes, bytes]]]]:
    """Every cookie and header with every bad value, repeated, and each real value of
    the session (``real``: cookie or header name → value) with its last character made
    non-ASCII, so that the parser gets past its shape checks."""
    cases = []
    for name, value in real.items():
        for label, tail in (("utf8", "é".encode()), ("latin1", b"\xff")):
            bad = value.encode()[:-1] + tail
            if name in COOKIES:
                cases.append(
                    (f"real cookie {name} {label}", [(b"cookie", name.encode() + b"=" + bad)])
                )
            else:
                cases.append((f"real header {name} {label}", [(name.encode(), bad)]))
    for label, value in VALUES.items():
        for name in COOKIES:
            cases.append((f"cookie {name} {label}", [(b"cookie", name.encode() + b"=" + value)]))
        for name in HEADERS:
            cases.append((f"header {name} {label}", [(name.encode(), value)]))
    for name in COOKIES:  # repeated: two values of one cookie, in one header and in two
        pair = name.encode() + b"=a"
        cases.append((f"cookie {name} twice", [(b"cookie", pair + b"; " + pair + b"b")]))
        cases.append((f"cookie {name} two headers", [(b"cookie", pair), (b"cookie", pair)]))
    for name in HEADERS:
        cases.append((f"header {name} twice", [(name.encode(), b"a"), (name.encode(), b"\xff")]))
    return cases


async def test_malformed_cookies_and_headers_never_answer_5xx(
    make: AppMaker, caplog: pytest.LogCaptureFixture
) -> None:
    app = await make.app(
        rate_limit_enabled=True,
        rate_limits=dict.fromkeys(
            ("ip", "reads", "writes", "login", "login-ip", "refresh"), "100000/minute"
        ),
        login_defence_enabled=True,
        trusted_proxies=["203.0.113.0/24"],
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("203.0.113.7", 1))
    client = httpx.AsyncClient(transport=transport, base_url="https://testserver")
    await add_user(app, "owner@example.com")
    bearer = (await login(client, "owner@example.com"))["access_token"]
    pre = (await client.get("/auth/csrf")).json()["csrf_token"]
    browser = await client.post(
        "/auth/login",
        json={"email": "owner@example.com", "password": STRONG_PASSWORD},
        headers={"X-CSRF-Token": pre},
    )
    cookies = [h.split(";", 1)[0].split("=", 1) for h in browser.headers.get_list("set-cookie")]
    real = {
        **{name: value for name, value in cookies if value},
        "authorization": f"Bearer {bearer}",
        "x-csrf-token": pre,
    }
    client.cookies.clear()
    failures = []

    assert set(COOKIES) - {"__Host-bastion-csrf-login"} <= set(real)  # the session's cookies
    with caplog.at_level(logging.WARNING):
        for label, extra in _cases(real):
            for method, path, body in REQUESTS:
                own = "header authorization" in label
                auth = [] if own else [(b"authorization", f"Bearer {bearer}".encode())]
                response = await client.send(_request(method, path, body, [*auth, *extra]))
                if response.status_code >= 500:
                    failures.append((label, method, path, response.status_code))
    tracebacks = [r for r in caplog.records if r.exc_info]

    await client.aclose()

    assert failures == []
    assert tracebacks == []
