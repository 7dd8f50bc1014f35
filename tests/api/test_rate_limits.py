"""Rate limits through the real app, on both backend sets (in process; Redis).

The IETF fields on every limited response (parsed as Structured Fields), exact counts at
the boundary, one quota per user and per IP, 429 problems and events, repeat-offender
blocks, the decision's remaining count, and the client IP behind proxies.
"""

from __future__ import annotations

from typing import Any

import http_sfv

from bastion.testing import capture_events
from tests.conftest import AppMaker
from tests.helpers import user

QUOTA_EXCEEDED = "https://iana.org/assignments/http-problem-types#quota-exceeded"


def parse_list(value: str) -> list[tuple[str, dict[str, Any]]]:
    """A Structured Fields list (RFC 9651) of strings with parameters."""
    parsed = http_sfv.List()
    parsed.parse(value.encode())
    members = []
    for item in parsed:
        assert isinstance(item.value, str), f"{value!r}: members must be strings"
        members.append((item.value, dict(item.params)))
    return members


async def limited(make: AppMaker, **limits: str) -> Any:
    return await make.app(rate_limit_enabled=True, rate_limits=limits)


async def test_every_limited_response_carries_the_ietf_fields(make: AppMaker) -> None:
    app = await limited(make, reads="100/minute", ip="300/minute")
    client = await make.client(app)
    alice = await user(client, app, "alice@example.com")

    first = await client.get("/tasks", headers=alice["auth"])
    second = await client.get("/tasks", headers=alice["auth"])
    missing = await client.get("/no-such-route")

    for response in (first, second, missing):
        policies = dict(parse_list(response.headers["RateLimit-Policy"]))
        assert policies["ip"] == {"q": 300, "w": 60}
        assert policies["reads"] == {"q": 100, "w": 60}
        [(name, params)] = parse_list(response.headers["RateLimit"])
        assert name in policies
        assert set(params) == {"r", "t"}
        assert isinstance(params["r"], int)
        assert isinstance(params["t"], int)
    assert missing.status_code == 404
    # "reads" (per user) is the one closest to its limit: 100 - 2 left of 100 > ...
    [(name, params)] = parse_list(second.headers["RateLimit"])
    assert name == "reads"
    assert params["r"] == 100 - 2
    assert 0 < params["t"] <= 60
    for old in ("X-RateLimit-Limit", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"):
        assert old not in second.headers


async def test_exactly_the_quota_passes_then_429_with_the_problem(make: AppMaker) -> None:
    app = await limited(make, writes="3/minute")
    client = await make.client(app)
    alice = await user(client, app, "alice@example.com")

    statuses, remaining = [], []
    for i in range(3):
        response = await client.post("/tasks", json={"title": f"t{i}"}, headers=alice["auth"])
        statuses.append(response.status_code)
        [(name, params)] = parse_list(response.headers["RateLimit"])
        remaining.append((name, params["r"]))
    with capture_events() as events:
        refused = await client.post("/tasks", json={"title": "t3"}, headers=alice["auth"])
        await app.state.security.events.drain()

    assert statuses == [201, 201, 201]
    assert remaining == [("writes", 2), ("writes", 1), ("writes", 0)]
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["Cache-Control"] == "no-store"  # RFC 6585: never cached
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    [(name, params)] = parse_list(refused.headers["RateLimit"])
    assert (name, params["r"]) == ("writes", 0)
    assert params["t"] <= 60
    assert retry_after >= 1
    body = refused.json()
    assert body["type"] == QUOTA_EXCEEDED
    assert body["status"] == 429
    assert body["violated-policies"] == ["writes"]
    assert body["request_id"] == refused.headers["X-Request-ID"]
    # Nothing half-written: the refused task does not exist.
    listed = await client.get("/tasks", headers=alice["auth"])
    assert sorted(t["title"] for t in listed.json()["items"]) == ["t0", "t1", "t2"]
    [event] = [e for e in events if e.event_type == "rate_limit_exceeded"]
    assert event.user_id == alice["id"]
    assert event.ip_address == "203.0.113.7"
    assert event.endpoint == "/tasks"
    assert event.request_id == refused.headers["X-Request-ID"]
    assert event.extra["violated_policies"] == ["writes"]


async def test_each_user_has_its_own_quota_and_anonymous_callers_share_their_ip(
    make: AppMaker,
) -> None:
    app = await limited(make, writes="2/minute", reads="2/minute")
    client = await make.client(app)
    alice = await user(client, app, "alice@example.com")
    bob = await user(client, app, "bob@example.com")

    for _ in range(2):
        assert (
            await client.post("/tasks", json={"title": "a"}, headers=alice["auth"])
        ).status_code == 201
    alice_refused = await client.post("/tasks", json={"title": "a"}, headers=alice["auth"])
    bob_allowed = await client.post("/tasks", json={"title": "b"}, headers=bob["auth"])
    # Deletes are their own class: alice's spent writes do not stop a delete.
    task_id = bob_allowed.json()["id"]
    bob_delete = await client.delete(f"/tasks/{task_id}", headers=bob["auth"])

    anonymous = [(await client.get("/healthz")).status_code for _ in range(3)]
    elsewhere = await make.client(app, ip="198.51.100.20")

    assert alice_refused.status_code == 429
    assert bob_allowed.status_code == 201
    assert bob_delete.status_code == 204
    assert anonymous == [200, 200, 429]
    assert (await elsewhere.get("/healthz")).status_code == 200


async def test_a_forged_token_does_not_spend_the_users_quota(make: AppMaker) -> None:
    app = await limited(make, reads="2/minute")
    client = await make.client(app)
    alice = await user(client, app, "alice@example.com")
    forged = alice["access_token"][:-4] + (
        "AAAA" if not alice["access_token"].endswith("AAAA") else "BBBB"
    )
    attacker = await make.client(app, ip="198.51.100.66")

    for _ in range(3):
        await attacker.get("/tasks", headers={"Authorization": f"Bearer {forged}"})

    assert (await client.get("/tasks", headers=alice["auth"])).status_code == 200
    assert (await client.get("/tasks", headers=alice["auth"])).status_code == 200


async def test_repeat_offenders_are_blocked_and_the_block_is_logged(make: AppMaker) -> None:
    app = await make.app(
        rate_limit_enabled=True,
        rate_limits={"writes": "1/minute"},
        rate_limit_block_after=3,
        rate_limit_block_seconds=120,
    )
    client = await make.client(app)
    alice = await user(client, app, "alice@example.com")
    assert (
        await client.post("/tasks", json={"title": "t"}, headers=alice["auth"])
    ).status_code == 201

    with capture_events() as events:
        refusals = [
            await client.post("/tasks", json={"title": "t"}, headers=alice["auth"])
            for _ in range(3)
        ]
        blocked = await client.get("/tasks", headers=alice["auth"])  # another class, blocked too
        await app.state.security.events.drain()

    assert [r.status_code for r in refusals] == [429, 429, 429]
    assert int(refusals[-1].headers["Retry-After"]) >= 120
    assert blocked.status_code == 429
    assert blocked.json()["violated-policies"] == []
    assert blocked.json()["detail"].startswith("Blocked after repeated refused requests")
    assert 60 < int(blocked.headers["Retry-After"]) <= 120
    kinds = [e.event_type for e in events]
    assert kinds.count("rate_limit_exceeded") == 3  # the blocked request adds none
    [suspicious] = [e for e in events if e.event_type == "suspicious_activity"]
    assert suspicious.user_id == alice["id"]
    assert suspicious.extra["block_level"] == 1
    # Someone else is not blocked.
    other = await make.client(app, ip="198.51.100.3")
    assert (await other.get("/healthz")).status_code == 200


async def test_a_denied_decision_says_how_many_requests_are_left(make: AppMaker) -> None:
    app = await limited(make, writes="5/minute")
    client = await make.client(app)
    viewer = await user(client, app, "viewer@example.com", role="viewer")

    with capture_events() as events:
        denied = await client.post("/tasks", json={"title": "t"}, headers=viewer["auth"])
        await app.state.security.events.drain()

    assert denied.status_code == 403
    [event] = [e for e in events if e.event_type == "permission_denied"]
    assert event.extra["decision"]["rate_limit_remaining"] == 4


async def test_registration_has_its_own_limit_per_ip(make: AppMaker) -> None:
    app = await limited(make, register="2/minute")
    client = await make.client(app)
    body = {"password": "correct horse battery staple 42"}

    answers = [
        (
            await client.post("/auth/register", json={"email": f"u{i}@example.com", **body})
        ).status_code
        for i in range(3)
    ]
    other = await make.client(app, ip="198.51.100.7")
    elsewhere = await other.post("/auth/register", json={"email": "x@example.com", **body})

    assert answers == [202, 202, 429]
    assert elsewhere.status_code == 202


async def test_the_decision_endpoint_says_what_the_user_has_left(make: AppMaker) -> None:
    app = await limited(make, writes="10/minute")
    client = await make.client(app)
    admin = await user(client, app, "admin@example.com", role="admin")
    member = await user(client, app, "member@example.com")
    await client.post("/tasks", json={"title": "t"}, headers=member["auth"])

    asked = {"user_id": member["id"], "method": "POST", "path": "/tasks"}
    twice = [
        await client.get("/admin/security/decision", params=asked, headers=admin["auth"])
        for _ in range(2)
    ]

    # Asking takes nothing: 10 - 1 left both times.
    assert [r.json()["rate_limit_remaining"] for r in twice] == [9, 9]
