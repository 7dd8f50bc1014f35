"""The EventStore contract, on memory, SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from bastion.stores import EventQuery, EventStore, SecurityEvent

T0 = datetime(2024, 7, 1, 8, 0, 0, 500000, tzinfo=UTC)


def event(minute: int, event_type: str = "login_failed", **overrides: object) -> SecurityEvent:
    values: dict[str, object] = {
        "event_type": event_type,
        "timestamp": T0 + timedelta(minutes=minute),
        "user_id": "user-1",
        "ip_address": "192.0.2.1",
    }
    values.update(overrides)
    return SecurityEvent(**values)  # type: ignore[arg-type]


async def test_query_returns_every_field_as_appended(event_store: EventStore) -> None:
    appended = SecurityEvent(
        event_type="token_reuse_detected",
        timestamp=T0,
        severity="high",
        user_id="8c7e1d2a-0000-4000-8000-000000000001",
        ip_address="2001:db8::7",
        endpoint="/auth/refresh",
        method="POST",
        details="a rotated refresh token was presented",
        request_id="req-42",
    )
    await event_store.append([appended])

    found = await event_store.query(EventQuery())

    assert found == [appended]
    assert found[0].timestamp.utcoffset() == timedelta(0)


async def test_query_returns_newest_first(event_store: EventStore) -> None:
    await event_store.append([event(0), event(1)])
    await event_store.append([event(2)])

    found = await event_store.query(EventQuery())

    assert [e.timestamp for e in found] == [T0 + timedelta(minutes=m) for m in (2, 1, 0)]


async def test_empty_append_stores_nothing(event_store: EventStore) -> None:
    await event_store.append([])

    found = await event_store.query(EventQuery())

    assert found == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("event_type", "login_succeeded"),
        ("user_id", "user-2"),
        ("ip_address", "198.51.100.9"),
    ],
    ids=["event_type", "user_id", "ip_address"],
)
async def test_query_filters_by_field(event_store: EventStore, field: str, value: str) -> None:
    wanted = [event(1, **{field: value}), event(3, **{field: value})]
    await event_store.append([event(0), wanted[0], event(2), wanted[1], event(4)])

    found = await event_store.query(EventQuery(**{field: value}))  # type: ignore[arg-type]

    assert found == wanted[::-1]


async def test_query_combines_filters(event_store: EventStore) -> None:
    wanted = event(2, "login_succeeded", user_id="user-2")
    await event_store.append(
        [event(0, "login_succeeded"), event(1, user_id="user-2"), wanted, event(3)]
    )

    found = await event_store.query(EventQuery(event_type="login_succeeded", user_id="user-2"))

    assert found == [wanted]


async def test_since_is_inclusive(event_store: EventStore) -> None:
    await event_store.append([event(m) for m in range(4)])

    found = await event_store.query(EventQuery(since=T0 + timedelta(minutes=2)))

    assert [e.timestamp for e in found] == [T0 + timedelta(minutes=m) for m in (3, 2)]


async def test_until_is_exclusive(event_store: EventStore) -> None:
    await event_store.append([event(m) for m in range(4)])

    found = await event_store.query(EventQuery(until=T0 + timedelta(minutes=2)))

    assert [e.timestamp for e in found] == [T0 + timedelta(minutes=m) for m in (1, 0)]


async def test_since_and_until_bound_a_window(event_store: EventStore) -> None:
    await event_store.append([event(m) for m in range(6)])

    found = await event_store.query(
        EventQuery(since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=4))
    )

    assert [e.timestamp for e in found] == [T0 + timedelta(minutes=m) for m in (3, 2, 1)]


async def test_window_compares_instants_not_wall_clocks(event_store: EventStore) -> None:
    await event_store.append([event(m) for m in range(4)])
    since_in_another_zone = (T0 + timedelta(minutes=3)).astimezone(timezone(timedelta(hours=2)))

    found = await event_store.query(EventQuery(since=since_in_another_zone))

    assert [e.timestamp for e in found] == [T0 + timedelta(minutes=3)]


async def test_limit_keeps_the_newest(event_store: EventStore) -> None:
    await event_store.append([event(m) for m in range(5)])

    found = await event_store.query(EventQuery(limit=2))

    assert [e.timestamp for e in found] == [T0 + timedelta(minutes=m) for m in (4, 3)]


async def test_limit_applies_after_filters(event_store: EventStore) -> None:
    await event_store.append([event(m, user_id=f"user-{m % 2}") for m in range(6)])

    found = await event_store.query(EventQuery(user_id="user-0", limit=2))

    assert [e.timestamp for e in found] == [T0 + timedelta(minutes=m) for m in (4, 2)]
