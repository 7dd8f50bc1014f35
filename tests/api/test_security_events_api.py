"""GET /admin/security/events: the stored events, newest first, filtered and keyset-paged.

ADMIN only; every input validated strictly (422 before any query); reading is itself a
``security_events_read`` event. Both backends (SQLite, PostgreSQL) through ``backend``.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import httpx
import pytest

from bastion.cursors import encode_event_cursor
from bastion.stores import EventQuery, SecurityEvent
from tests.helpers import user

PATH = "/admin/security/events"
T0 = datetime(2024, 7, 1, 8, 0, 0, 123456, tzinfo=UTC)
USER_A = "8c7e1d2a-0000-4000-8000-00000000000a"
USER_B = "8c7e1d2a-0000-4000-8000-00000000000b"


def seeded(minute: int, event_type: str = "seeded", **overrides: Any) -> SecurityEvent:
    values: dict[str, Any] = {
        "event_type": event_type,
        "timestamp": T0 + timedelta(minutes=minute),
        "severity": "medium",
        "user_id": USER_A,
        "ip_address": "192.0.2.1",
        "endpoint": "/auth/login",
        "method": "POST",
        "details": f"at {minute}",
        "request_id": f"req-{minute}",
    }
    values.update(overrides)
    return SecurityEvent(**values)


async def seed(app: Any, *events: SecurityEvent) -> None:
    await app.state.security.stores.events.append(list(events))


@pytest.fixture
async def admin(client: httpx.AsyncClient, app: Any) -> dict[str, Any]:
    return dict(await user(client, app, "admin@example.com", "admin"))


async def read(client: httpx.AsyncClient, admin: dict[str, Any], **params: Any) -> httpx.Response:
    return await client.get(PATH, params=params, headers=admin["auth"])


async def all_pages(
    client: httpx.AsyncClient, admin: dict[str, Any], **params: Any
) -> list[list[dict[str, Any]]]:
    pages: list[list[dict[str, Any]]] = []
    cursor = None
    while True:
        response = await read(client, admin, **params, **({"cursor": cursor} if cursor else {}))
        assert response.status_code == 200, response.text
        pages.append(response.json()["items"])
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return pages


# -- the shape --------------------------------------------------------------------------


async def test_an_event_is_returned_in_the_contracts_shape(
    client: httpx.AsyncClient, app: Any, admin: dict[str, Any]
) -> None:
    await seed(app, seeded(0, "auth_failure", details="invalid password"))

    response = await read(client, admin, event_type="auth_failure", until="2025-01-01T00:00:00Z")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "items": [
            {
                "timestamp": "2024-07-01T08:00:00.123Z",
                "event_type": "auth_failure",
                "user_id": USER_A,
                "ip_address": "192.0.2.1",
                "endpoint": "/auth/login",
                "method": "POST",
                "details": "invalid password",
                "severity": "medium",
                "request_id": "req-0",
            }
        ],
        "next_cursor": None,
    }


async def test_stored_extra_fields_are_returned(
    client: httpx.AsyncClient, app: Any, admin: dict[str, Any]
) -> None:
    await seed(app, seeded(0, "suspicious_activity", extra={"category": "malicious_csrf"}))

    response = await read(client, admin, event_type="suspicious_activity")

    [item] = response.json()["items"]
    assert item["category"] == "malicious_csrf"
    assert "id" not in item


async def test_events_come_newest_first(
    client: httpx.AsyncClient, app: Any, admin: dict[str, Any]
) -> None:
    await seed(app, seeded(1), seeded(3), seeded(2))

    response = await read(client, admin, event_type="seeded")

    assert [i["details"] for i in response.json()["items"]] == ["at 3", "at 2", "at 1"]


async def test_events_the_service_emitted_are_listed(
    client: httpx.AsyncClient, app: Any, admin: dict[str, Any]
) -> None:
    await app.state.security.events.drain()

    response = await read(client, admin, event_type="auth_success", user_id=admin["id"])

    [item] = response.json()["items"]
    assert item["endpoint"] == "/auth/login"
    assert item["timestamp"].endswith("Z")


# -- filters ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"event_type": "role_changed"}, ["at 4", "at 1"]),
        ({"user_id": USER_B}, ["at 5", "at 4", "at 2"]),
        ({"ip_address": "2001:db8::7"}, ["at 6", "at 3"]),
        ({"ip_address": "2001:DB8:0:0::7"}, ["at 6", "at 3"]),
        ({"since": "2024-07-01T08:02:00.123456Z"}, ["at 6", "at 5", "at 4", "at 3", "at 2"]),
        ({"until": "2024-07-01T08:02:00.123456Z"}, ["at 1", "at 0"]),
        ({"since": "2024-07-01T10:03:00.123456+02:00"}, ["at 6", "at 5", "at 4", "at 3"]),
        (
            {"event_type": "role_changed", "user_id": USER_B, "since": "2024-07-01T08:03:00Z"},
            ["at 4"],
        ),
        ({"event_type": "no_such_type"}, []),
    ],
    ids=[
        "event_type",
        "user_id",
        "ip_address",
        "ip_address-any-spelling",
        "since-inclusive",
        "until-exclusive",
        "since-in-another-zone",
        "combined",
        "unknown-type-matches-nothing",
    ],
)
async def test_filters_select_the_matching_events(
    client: httpx.AsyncClient,
    app: Any,
    admin: dict[str, Any],
    params: dict[str, str],
    expected: list[str],
) -> None:
    await seed(
        app,
        seeded(0),
        seeded(1, "role_changed"),
        seeded(2, user_id=USER_B),
        seeded(3, ip_address="2001:db8::7"),
        seeded(4, "role_changed", user_id=USER_B),
        seeded(5, user_id=USER_B),
        seeded(6, ip_address="2001:db8::7"),
    )
    window = {"until": "2024-07-01T09:00:00Z", **params}

    response = await read(client, admin, **window)

    assert response.status_code == 200, response.text
    assert [i["details"] for i in response.json()["items"]] == expected


# -- pages ------------------------------------------------------------------------------


async def test_the_default_page_holds_fifty_events(
    client: httpx.AsyncClient, app: Any, admin: dict[str, Any]
) -> None:
    await seed(app, *[seeded(m) for m in range(60)])

    response = await read(client, admin, event_type="seeded")

    assert len(response.json()["items"]) == 50
    assert response.json()["next_cursor"] is not None


@pytest.mark.parametrize("limit", [1, 3, 100], ids=["one", "three", "max"])
async def test_pages_list_every_event_once_in_order(
    client: httpx.AsyncClient, app: Any, admin: dict[str, Any], limit: int
) -> None:
    # Seven events on three timestamps: ties are ordered by the store's id.
    await seed(app, *[seeded(m % 3, request_id=f"e{m}") for m in range(7)])
    whole = (await read(client, admin, event_type="seeded", limit=100)).json()["items"]

    pages = await all_pages(client, admin, event_type="seeded", limit=limit)

    listed = [i["request_id"] for page in pages for i in page]
    assert listed == [i["request_id"] for i in whole]
    assert sorted(listed) == sorted(f"e{m}" for m in range(7))
    assert all(len(page) <= limit for page in pages)


async def test_the_last_page_has_no_cursor(
    client: httpx.AsyncClient, app: Any, admin: dict[str, Any]
) -> None:
    await seed(app, seeded(0), seeded(1))

    response = await read(client, admin, event_type="seeded", limit=2)

    assert len(response.json()["items"]) == 2
    assert response.json()["next_cursor"] is None


async def test_pages_stay_stable_while_new_events_arrive(
    client: httpx.AsyncClient, app: Any, admin: dict[str, Any]
) -> None:
    await seed(app, *[seeded(m) for m in range(4)])
    first = (await read(client, admin, event_type="seeded", limit=2)).json()
    await seed(app, seeded(10), seeded(11))

    second = (await read(client, admin, event_type="seeded", cursor=first["next_cursor"])).json()

    assert [i["details"] for i in first["items"]] == ["at 3", "at 2"]
    assert [i["details"] for i in second["items"]] == ["at 1", "at 0"]


async def test_a_cursor_keeps_the_filters_of_its_request(
    client: httpx.AsyncClient, app: Any, admin: dict[str, Any]
) -> None:
    await seed(app, *[seeded(m, user_id=USER_B if m % 2 else USER_A) for m in range(6)])
    first = (await read(client, admin, user_id=USER_B, limit=1)).json()

    rest = (await read(client, admin, user_id=USER_B, cursor=first["next_cursor"])).json()

    assert [i["details"] for i in first["items"] + rest["items"]] == ["at 5", "at 3", "at 1"]


async def test_a_forged_cursor_past_every_id_is_a_position_not_an_error(
    client: httpx.AsyncClient, app: Any, admin: dict[str, Any]
) -> None:
    await seed(app, seeded(0), seeded(1))
    forged = encode_event_cursor(T0 + timedelta(minutes=1), 2**63 - 1)

    response = await read(client, admin, event_type="seeded", cursor=forged)

    assert response.status_code == 200
    assert [i["details"] for i in response.json()["items"]] == ["at 1", "at 0"]


# -- who may read -----------------------------------------------------------------------


@pytest.mark.parametrize("role", ["member", "viewer"], ids=["member", "viewer"])
async def test_a_non_admin_is_refused(client: httpx.AsyncClient, app: Any, role: str) -> None:
    await seed(app, seeded(0, details="only for admins"))
    caller = await user(client, app, f"{role}@example.com", role)

    response = await client.get(PATH, headers=caller["auth"])

    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert "only for admins" not in response.text


async def test_a_refused_read_is_a_permission_denied_event(
    client: httpx.AsyncClient, app: Any
) -> None:
    member = await user(client, app, "member@example.com")

    await client.get(PATH, headers=member["auth"])

    await app.state.security.events.drain()
    denied = await app.state.security.stores.events.query(
        EventQuery(event_type="permission_denied", user_id=member["id"])
    )
    assert [e.endpoint for e in denied] == [PATH]


async def test_an_anonymous_caller_is_refused(client: httpx.AsyncClient, app: Any) -> None:
    await seed(app, seeded(0, details="only for admins"))

    response = await client.get(PATH)

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "only for admins" not in response.text


async def test_a_forged_token_is_refused(client: httpx.AsyncClient, app: Any) -> None:
    admin = await user(client, app, "admin@example.com", "admin")
    header, payload, _ = admin["access_token"].split(".")

    response = await client.get(
        PATH, headers={"Authorization": f"Bearer {header}.{payload}.{'A' * 43}"}
    )

    assert response.status_code == 401


async def test_a_demoted_admin_is_refused_at_once(
    client: httpx.AsyncClient, app: Any, admin: dict[str, Any]
) -> None:
    other = await user(client, app, "other@example.com", "admin")
    await client.patch(
        f"/admin/users/{admin['id']}", json={"role": "member"}, headers=other["auth"]
    )

    response = await read(client, admin)

    assert response.status_code == 401


# -- reading is audited -----------------------------------------------------------------


async def test_reading_is_recorded_with_its_filters(
    client: httpx.AsyncClient, app: Any, admin: dict[str, Any]
) -> None:
    await seed(app, seeded(0))

    await read(client, admin, event_type="seeded", ip_address="192.0.2.1")

    await app.state.security.events.drain()
    [event] = await app.state.security.stores.events.query(
        EventQuery(event_type="security_events_read")
    )
    assert event.user_id == admin["id"]
    assert event.severity == "low"
    assert event.endpoint == PATH
    assert event.details == "1 events read"
    assert event.extra["filters"] == {
        "event_type": "seeded",
        "ip_address": "192.0.2.1",
        "next_page": False,
    }


# -- validation -------------------------------------------------------------------------


def _cursor_of(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor",
        _cursor_of({"a": 1}),
        _cursor_of(["2024-07-01T08:00:00", 1]),
        _cursor_of(["2024-07-01T08:00:00+00:00", "1"]),
        _cursor_of(["2024-07-01T08:00:00+00:00", True]),
        _cursor_of(["2024-07-01T08:00:00+00:00", -1]),
        _cursor_of(["2024-07-01T08:00:00+00:00", 2**63]),
        _cursor_of(["2024-07-01T08:00:00+00:00", 1.5]),
        _cursor_of(["2024-07-01T08:00:00+00:00", str(uuid4())]),
        _cursor_of(["0001-01-01T00:00:00+01:00", 1]),
        "%00",
    ],
    ids=[
        "garbage",
        "object",
        "naive-time",
        "id-as-text",
        "id-as-bool",
        "negative-id",
        "id-past-bigint",
        "fractional-id",
        "a-user-list-cursor",
        "time-before-the-epoch-of-datetime",
        "nul",
    ],
)
async def test_a_malformed_cursor_is_refused(
    client: httpx.AsyncClient, admin: dict[str, Any], cursor: str
) -> None:
    response = await read(client, admin, cursor=cursor)

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["loc"] == ["query", "cursor"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"ip_address": "192.0.2.256"}, "ip_address"),
        ({"ip_address": "example.com"}, "ip_address"),
        ({"ip_address": "192.0.2.1' OR '1'='1"}, "ip_address"),
        ({"ip_address": "1" * 46}, "ip_address"),
        ({"ip_address": "3232235777"}, "ip_address"),
        ({"user_id": "user-1"}, "user_id"),
        ({"user_id": "' OR 1=1 --"}, "user_id"),
        ({"event_type": "x" * 65}, "event_type"),
        ({"event_type": "auth_failure' OR '1'='1"}, "event_type"),
        ({"event_type": ""}, "event_type"),
        ({"since": "2024-07-01T08:00:00"}, "since"),
        ({"since": "2024-07-01"}, "since"),
        ({"since": "1719820800"}, "since"),
        ({"until": "yesterday"}, "until"),
        ({"until": "2024-13-01T00:00:00Z"}, "until"),
        ({"since": "0001-01-01T00:00:00+01:00"}, "since"),
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "c" * 513}, "cursor"),
    ],
    ids=[
        "ip-out-of-range",
        "ip-a-hostname",
        "ip-injection",
        "ip-too-long",
        "ip-as-a-number",
        "user-not-a-uuid",
        "user-injection",
        "type-too-long",
        "type-injection",
        "type-empty",
        "since-without-zone",
        "since-a-date",
        "since-unix-time",
        "until-a-word",
        "until-month-13",
        "since-before-datetime-min",
        "limit-zero",
        "limit-past-100",
        "limit-not-a-number",
        "cursor-too-long",
    ],
)
async def test_an_invalid_filter_is_refused(
    client: httpx.AsyncClient, admin: dict[str, Any], params: dict[str, str], field: str
) -> None:
    response = await read(client, admin, **params)

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["loc"] for e in response.json()["errors"]] == [["query", field]]


async def test_since_after_until_is_refused(
    client: httpx.AsyncClient, admin: dict[str, Any]
) -> None:
    response = await read(client, admin, since="2024-07-02T00:00:00Z", until="2024-07-01T00:00:00Z")

    assert response.status_code == 422
    assert response.json()["errors"] == [{"loc": ["query", "since"], "msg": "since is after until"}]


async def test_an_empty_window_is_not_an_error(
    client: httpx.AsyncClient, app: Any, admin: dict[str, Any]
) -> None:
    await seed(app, seeded(0))

    response = await read(client, admin, since="2024-07-01T08:00:00Z", until="2024-07-01T08:00:00Z")

    assert response.status_code == 200
    assert response.json()["items"] == []


# -- documentation ----------------------------------------------------------------------


def test_the_route_is_documented_with_its_model_and_errors(app: Any) -> None:
    operation = app.openapi()["paths"][PATH]["get"]

    assert operation["summary"]
    assert {"200", "401", "403", "422"} <= set(operation["responses"])
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema["$ref"].endswith("/SecurityEventList")
    params = {p["name"] for p in operation["parameters"]}
    assert params == {"event_type", "user_id", "ip_address", "since", "until", "limit", "cursor"}
