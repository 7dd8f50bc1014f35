"""The AlertStore contract, on memory, SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from bastion.stores import Alert, AlertStore, Stores

T0 = datetime(2026, 3, 1, 9, 0, 0, 250000, tzinfo=UTC)


@pytest.fixture
def alert_store(stores: Stores) -> AlertStore:
    return stores.alerts


def alert(minute: int, **overrides: object) -> Alert:
    values: dict[str, object] = {
        "id": uuid4(),
        "rule": "auth_failures_from_ip",
        "key": "2001:db8::7",
        "count": 10,
        "window_seconds": 300,
        "first_event_at": T0 + timedelta(minutes=minute - 4),
        "last_event_at": T0 + timedelta(minutes=minute),
        "severity": "high",
        "created_at": T0 + timedelta(minutes=minute),
    }
    values.update(overrides)
    return Alert(**values)  # type: ignore[arg-type]


async def test_recent_returns_every_field_as_added(alert_store: AlertStore) -> None:
    added = alert(0)
    await alert_store.add(added)

    found = await alert_store.recent(10)

    assert found == [added]
    assert found[0].created_at.utcoffset() == timedelta(0)


async def test_recent_returns_newest_first(alert_store: AlertStore) -> None:
    for minute in (1, 0, 2):
        await alert_store.add(alert(minute))

    found = await alert_store.recent(10)

    assert [a.created_at for a in found] == [T0 + timedelta(minutes=m) for m in (2, 1, 0)]


async def test_recent_returns_at_most_limit(alert_store: AlertStore) -> None:
    for minute in range(5):
        await alert_store.add(alert(minute))

    found = await alert_store.recent(2)

    assert [a.created_at for a in found] == [T0 + timedelta(minutes=m) for m in (4, 3)]


async def test_an_empty_store_has_no_alerts(alert_store: AlertStore) -> None:
    assert await alert_store.recent(50) == []


async def test_a_limit_below_one_is_refused(alert_store: AlertStore) -> None:
    with pytest.raises(ValueError, match="limit"):
        await alert_store.recent(0)
