"""Input refused on the auth routes: one ``input_validation_failed`` event each.

Each refusal (a 422 of the models or the password policy, a 415, a 413, a bad JSON
body, headers too large) is logged exactly once, with where the input was bad and never
what it was; refusals with events of their own, and other routes, log none.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import httpx
import pytest

from bastion.stores import EventQuery, SecurityEvent
from bastion.testing import capture_events
from tests.helpers import STRONG_PASSWORD, signed_up

SECRET = "Sekrit-passphrase-9876-never-logged"
HOSTILE_KEY = "token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXZhbHVl"


def refusals(events: Sequence[SecurityEvent]) -> list[SecurityEvent]:
    return [e for e in events if e.event_type == "input_validation_failed"]


async def refused(
    client: httpx.AsyncClient, path: str, **request: Any
) -> tuple[httpx.Response, list[SecurityEvent]]:
    with capture_events() as events:
        response = await client.post(path, **request)
    return response, list(events)


@pytest.mark.parametrize(
    ("path", "request_", "status", "details"),
    [
        (
            "/auth/register",
            {"json": {"email": "not-an-address", "password": SECRET}},
            422,
            "invalid input: body.email",
        ),
        ("/auth/login", {"json": {"email": "a@example.com"}}, 422, "invalid input: body.password"),
        (
            "/auth/register",
            {"json": {"email": "weak@example.com", "password": "short"}},
            422,
            "password refused by the policy: body.password",
        ),
        (
            "/auth/login",
            {"content": SECRET, "headers": {"Content-Type": "text/plain"}},
            415,
            "unsupported media type",
        ),
        (
            "/auth/login",
            {
                "content": b'{"email": "a@example.com", "email": "b@example.com"}',
                "headers": {"Content-Type": "application/json"},
            },
            422,
            "invalid JSON body: a JSON object has the same member name twice",
        ),
        (
            "/auth/refresh",
            {"json": {"refresh_token": "x" * 2_000_000}},
            413,
            "request body larger than 1048576 bytes",
        ),
        (
            "/auth/password/forgot",
            {"headers": {"X-Padding": "p" * 20_000}, "json": {"email": "a@example.com"}},
            431,
            "request headers too large",
        ),
    ],
    ids=["email", "missing-field", "weak-password", "media-type", "json", "size", "headers"],
)
async def test_each_refused_input_is_logged_once(
    client: httpx.AsyncClient,
    path: str,
    request_: dict[str, Any],
    status: int,
    details: str,
) -> None:
    response, events = await refused(client, path, **request_)

    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    (event,) = events  # exactly one event, and it is this one
    assert event.event_type == "input_validation_failed"
    assert event.details == details
    assert event.severity == "low"
    assert event.extra == {"status": status}
    assert (event.endpoint, event.method, event.ip_address) == (path, "POST", "203.0.113.7")
    assert event.request_id == response.headers["x-request-id"]


async def test_the_refused_values_are_never_logged(client: httpx.AsyncClient) -> None:
    # Unknown member names are the client's own text: a token, a password, forged log
    # lines or a NUL (which PostgreSQL would refuse, with the whole batch of events).
    body = {
        "email": SECRET,
        "password": SECRET,
        HOSTILE_KEY: SECRET,
        "Hunter2!Summer": 1,
        "\nauth_success user=admin": 1,
        "\u0000": 1,
    }

    response, events = await refused(client, "/auth/register", json=body)

    assert response.status_code == 422
    (event,) = refusals(events)
    logged = json.dumps([e.details for e in events] + [e.extra for e in events])
    for text in (SECRET, "eyJ", "Hunter2", "auth_success", "\\u0000"):
        assert text not in logged
    assert event.details == "invalid input: " + ", ".join(["body.<unknown>"] * 4)


async def test_the_events_are_stored(client: httpx.AsyncClient, app: Any) -> None:
    xml = await client.post("/auth/login", content="x", headers={"Content-Type": "text/xml"})
    nul = await client.post("/auth/login", json={"\u0000": 1, "email": "a@example.com"})
    security = app.state.security
    await security.drain()

    stored = await security.stores.events.query(EventQuery(event_type="input_validation_failed"))

    assert (xml.status_code, nul.status_code) == (415, 422)
    assert [(e.endpoint, e.details, e.extra) for e in reversed(stored)] == [
        ("/auth/login", "unsupported media type", {"status": 415}),
        ("/auth/login", "invalid input: body.password, body.<unknown>", {"status": 422}),
    ]


async def test_refusals_with_events_of_their_own_are_not_logged_twice(
    client: httpx.AsyncClient,
) -> None:
    await signed_up(client, "alice@example.com")
    with capture_events() as events:
        wrong = await client.post(
            "/auth/login", json={"email": "alice@example.com", "password": SECRET}
        )
        link = await client.post("/auth/email/verify", json={"token": "not-a-link-token"})

    assert (wrong.status_code, link.status_code) == (401, 400)
    assert refusals(events) == []
    assert [e.event_type for e in events] == ["auth_failure", "auth_failure"]


async def test_other_routes_log_no_input_event(client: httpx.AsyncClient) -> None:
    pair = await signed_up(client, "bob@example.com")

    response, events = await refused(client, "/tasks", json={"title": ""}, headers=pair["auth"])

    assert response.status_code == 422
    assert refusals(events) == []


async def test_a_valid_request_logs_no_input_event(client: httpx.AsyncClient) -> None:
    response, events = await refused(
        client, "/auth/register", json={"email": "carol@example.com", "password": STRONG_PASSWORD}
    )

    assert response.status_code == 202
    assert refusals(events) == []
