"""The EventStore contract, on memory, SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
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


async def test_query_numbers_every_event(event_store: EventStore) -> None:
    await event_store.append([event(0), event(1)])

    found = await event_store.query(EventQuery())

    assert all(isinstance(e.id, int) for e in found)
    assert len({e.id for e in found}) == 2


async def test_appended_id_is_ignored(event_store: EventStore) -> None:
    await event_store.append([event(0, id=7), event(1, id=7)])

    found = await event_store.query(EventQuery())

    assert len({e.id for e in found}) == 2


async def test_order_is_by_timestamp_not_by_arrival(event_store: EventStore) -> None:
    # An event built earlier can be stored later (its change's transaction was slower).
    await event_store.append([event(2)])
    await event_store.append([event(0)])
    await event_store.append([event(1)])

    found = await event_store.query(EventQuery())

    assert [e.timestamp for e in found] == [T0 + timedelta(minutes=m) for m in (2, 1, 0)]


async def test_equal_timestamps_are_ordered_by_id_newest_first(event_store: EventStore) -> None:
    for name in ("first", "second", "third"):
        await event_store.append([event(0, details=name)])

    found = await event_store.query(EventQuery())

    assert [e.details for e in found] == ["third", "second", "first"]


async def _pages(event_store: EventStore, query: EventQuery) -> list[list[SecurityEvent]]:
    pages: list[list[SecurityEvent]] = []
    before = None
    while True:
        page = await event_store.query(dataclasses.replace(query, before=before))
        if not page:
            return pages
        pages.append(page)
        last = page[-1]
        assert last.id is not None
        before = (last.timestamp, last.id)


@pytest.mark.parametrize("size", [1, 2, 3, 7], ids=["size-1", "size-2", "size-3", "size-7"])
async def test_pages_cover_every_event_once_in_order(event_store: EventStore, size: int) -> None:
    # Ties on purpose: three timestamps for seven events.
    await event_store.append([event(m % 3, details=f"e{m}") for m in range(7)])
    whole = await event_store.query(EventQuery(limit=100))

    pages = await _pages(event_store, EventQuery(limit=size))

    assert [e.details for page in pages for e in page] == [e.details for e in whole]
    assert all(len(page) <= size for page in pages)
    assert len(whole) == 7


async def test_pages_stay_stable_while_new_events_arrive(event_store: EventStore) -> None:
    await event_store.append([event(m, details=f"old{m}") for m in range(4)])
    [first, second] = await event_store.query(EventQuery(limit=2))
    await event_store.append([event(9, details="new"), event(1, details="late")])
    assert second.id is not None

    rest = await event_store.query(EventQuery(limit=10, before=(second.timestamp, second.id)))

    assert [first.details, second.details] == ["old3", "old2"]
    assert [e.details for e in rest] == ["late", "old1", "old0"]


async def test_pages_apply_the_filters_combined(event_store: EventStore) -> None:
    wanted = [
        event(m, "role_changed", user_id="user-2", details=f"w{i}")
        for i, m in enumerate((1, 2, 2, 5, 6))
    ]
    others = [
        event(3, "role_changed", user_id="user-1"),
        event(4, user_id="user-2"),
        event(2, "role_changed", user_id="user-2", ip_address="198.51.100.9"),
        event(9, "role_changed", user_id="user-2"),
    ]
    await event_store.append([*wanted[:2], *others, *wanted[2:]])
    query = EventQuery(
        event_type="role_changed",
        user_id="user-2",
        ip_address="192.0.2.1",
        since=T0 + timedelta(minutes=1),
        until=T0 + timedelta(minutes=9),
        limit=2,
    )

    pages = await _pages(event_store, query)

    assert [e.details for page in pages for e in page] == ["w4", "w3", "w2", "w1", "w0"]
    assert [len(page) for page in pages] == [2, 2, 1]


async def test_after_keeps_only_newer_events(event_store: EventStore) -> None:
    await event_store.append([event(m, details=f"e{m}") for m in range(3)])
    await event_store.append([event(1, details="tie")])
    [middle] = await event_store.query(EventQuery(until=T0 + timedelta(minutes=2), limit=1))
    assert middle.id is not None

    found = await event_store.query(EventQuery(after=(middle.timestamp, middle.id)))

    assert middle.details == "tie"
    assert [e.details for e in found] == ["e2"]


async def test_before_and_after_bound_a_window(event_store: EventStore) -> None:
    await event_store.append([event(m, details=f"e{m}") for m in range(5)])
    found = await event_store.query(EventQuery())
    newest, oldest = found[0], found[-1]
    assert newest.id is not None
    assert oldest.id is not None

    window = await event_store.query(
        EventQuery(before=(newest.timestamp, newest.id), after=(oldest.timestamp, oldest.id))
    )

    assert [e.details for e in window] == ["e3", "e2", "e1"]


async def test_a_position_past_every_event_finds_nothing_newer(event_store: EventStore) -> None:
    await event_store.append([event(0)])

    found = await event_store.query(EventQuery(after=(T0, 2**63 - 1)))

    assert found == []


async def test_a_position_past_every_id_pages_from_that_time(event_store: EventStore) -> None:
    await event_store.append([event(0), event(1)])

    found = await event_store.query(EventQuery(before=(T0 + timedelta(minutes=1), 2**63 - 1)))

    assert [e.timestamp for e in found] == [T0 + timedelta(minutes=1), T0]


@pytest.mark.parametrize("limit", [1, 3, 100_000], ids=["one", "exact", "more-than-stored"])
async def test_limit_bounds_the_page(event_store: EventStore, limit: int) -> None:
    await event_store.append([event(m) for m in range(3)])

    found = await event_store.query(EventQuery(limit=limit))

    assert len(found) == min(limit, 3)


@pytest.mark.parametrize("limit", [0, -1], ids=["zero", "negative"])
def test_a_limit_below_one_is_refused(limit: int) -> None:
    with pytest.raises(ValueError, match="limit"):
        EventQuery(limit=limit)


@pytest.mark.parametrize(
    "field",
    ["since", "until", "before", "after"],
    ids=["since", "until", "before", "after"],
)
def test_naive_times_are_refused(field: str) -> None:
    naive = datetime(2024, 7, 1, 8, 0)
    value: object = (naive, 1) if field in ("before", "after") else naive

    with pytest.raises(ValueError, match="timezone-aware"):
        EventQuery(**{field: value})  # type: ignore[arg-type]
