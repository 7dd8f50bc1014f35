"""The alert engine: thresholds over sliding windows, one alert per attack, bounded memory,
and the rules' configuration. Time is a frozen clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bastion.alerts import DEFAULT_RULES, AlertEngine, MemoryAlertStore, configure_rules
from bastion.clock import FrozenClock
from bastion.events import EventLog, RequestContext
from bastion.stores import SecurityEvent
from bastion.testing import capture_events

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
IP = "198.51.100.23"
USER = "7d8c0a4e-0000-4000-8000-000000000042"


class Rig:
    """An event log, the engine observing it, and the store it writes, on one clock."""

    def __init__(self, rules: Any = DEFAULT_RULES, **engine: Any) -> None:
        self.clock = FrozenClock(T0)
        self.log = EventLog([], clock=self.clock)
        self.store = MemoryAlertStore()
        self.engine = AlertEngine(rules, self.store, self.log, clock=self.clock, **engine)
        self.engine.attach()

    async def emit(self, event_type: str, n: int = 1, *, ip: str = IP, **fields: Any) -> None:
        for _ in range(n):
            await self.log.emit(event_type, context=RequestContext(ip_address=ip), **fields)

    async def failures(self, n: int, ip: str = IP) -> None:
        await self.emit("auth_failure", n, ip=ip, details="invalid password")

    async def alerts(self) -> list[str]:
        await self.engine.drain()
        return [f"{a.rule}:{a.key}" for a in await self.store.recent(100)]


@pytest.fixture
def rig() -> Rig:
    return Rig()


@pytest.fixture
def events() -> Iterator[list[SecurityEvent]]:
    with capture_events() as captured:
        yield captured


async def test_nine_failures_from_one_ip_raise_no_alert(rig: Rig) -> None:
    await rig.failures(9)

    assert await rig.alerts() == []


async def test_the_tenth_failure_raises_one_alert(rig: Rig) -> None:
    await rig.failures(10)

    assert await rig.alerts() == [f"auth_failures_from_ip:{IP}"]


async def test_the_alert_records_the_count_the_window_and_the_event_times(rig: Rig) -> None:
    await rig.failures(1)
    rig.clock.advance(60)
    await rig.failures(9)
    await rig.engine.drain()

    [alert] = await rig.store.recent(10)

    assert (alert.count, alert.window_seconds, alert.severity) == (10, 300, "high")
    assert (alert.first_event_at, alert.last_event_at) == (T0, T0 + timedelta(seconds=60))
    assert alert.created_at == T0 + timedelta(seconds=60)


async def test_a_thousand_failures_within_the_cooldown_raise_one_alert(rig: Rig) -> None:
    for _ in range(100):
        await rig.failures(10)
        rig.clock.advance(5)  # 500 s in all: within the 900 s cooldown

    assert await rig.alerts() == [f"auth_failures_from_ip:{IP}"]


async def test_an_attack_going_on_after_the_cooldown_raises_a_new_alert(rig: Rig) -> None:
    await rig.failures(10)
    rig.clock.advance(901)
    await rig.failures(10)

    assert len(await rig.alerts()) == 2


async def test_failures_older_than_the_window_do_not_count(rig: Rig) -> None:
    await rig.failures(9)
    rig.clock.advance(301)
    await rig.failures(9)

    assert await rig.alerts() == []


async def test_the_window_slides_rather_than_resets(rig: Rig) -> None:
    await rig.failures(5)
    rig.clock.advance(200)
    await rig.failures(4)
    rig.clock.advance(200)  # the first five are out, the four still in: 4 + 6 = 10
    await rig.failures(6)

    assert await rig.alerts() == [f"auth_failures_from_ip:{IP}"]


async def test_failures_from_different_ips_count_apart(rig: Rig) -> None:
    for n in range(10):
        await rig.failures(1, ip=f"192.0.2.{n}")

    assert await rig.alerts() == []


async def test_the_key_cap_evicts_the_least_recently_seen_key() -> None:
    rig = Rig(max_keys=3)
    await rig.failures(9, ip="192.0.2.1")
    for n in (2, 3, 4):  # a fourth key: 192.0.2.1 goes, and its nine failures with it
        await rig.failures(1, ip=f"192.0.2.{n}")
    await rig.failures(1, ip="192.0.2.1")

    assert await rig.alerts() == []
    assert (rig.engine.tracked, rig.engine.evicted) == (3, 2)


async def test_a_flood_of_random_ips_keeps_memory_at_the_cap() -> None:
    rig = Rig(max_keys=100)

    for n in range(1000):
        await rig.failures(1, ip=f"10.0.{n // 256}.{n % 256}")

    assert rig.engine.tracked == 100


async def test_idle_windows_are_dropped_after_their_window_and_cooldown(rig: Rig) -> None:
    await rig.failures(3, ip="192.0.2.1")
    rig.clock.advance(901)
    await rig.failures(1, ip="192.0.2.2")

    assert rig.engine.tracked == 1


async def test_an_alert_is_logged_as_alert_raised_with_the_rules_severity(
    rig: Rig, events: list[SecurityEvent]
) -> None:
    await rig.emit("token_reuse_detected", user_id=USER, details="reused")
    await rig.engine.drain()

    [raised] = [e for e in events if e.event_type == "alert_raised"]

    assert raised.severity == "critical"
    assert raised.extra["rule"] == "token_reuse"
    assert raised.extra["alert_key"] == USER
    assert raised.extra["alert_id"] == str((await rig.store.recent(1))[0].id)


async def test_five_permission_denials_for_one_user_in_a_minute_raise_an_alert(
    rig: Rig,
) -> None:
    await rig.emit("permission_denied", 4, user_id=USER)
    rig.clock.advance(59)
    await rig.emit("permission_denied", 1, user_id=USER)

    assert await rig.alerts() == [f"permission_denials_for_user:{USER}"]


async def test_five_permission_denials_spread_over_more_than_a_minute_raise_none(
    rig: Rig,
) -> None:
    await rig.emit("permission_denied", 4, user_id=USER)
    rig.clock.advance(61)
    await rig.emit("permission_denied", 1, user_id=USER)

    assert await rig.alerts() == []


@pytest.mark.parametrize(
    ("old_role", "new_role", "expected"),
    [
        pytest.param("member", "admin", [f"admin_role_granted:{USER}"], id="granted"),
        pytest.param("viewer", "member", [], id="not-admin"),
        pytest.param("admin", "member", [], id="revoked"),
    ],
)
async def test_granting_the_admin_role_raises_an_alert_keyed_by_the_target(
    rig: Rig, old_role: str, new_role: str, expected: list[str]
) -> None:
    await rig.emit(
        "role_changed",
        user_id="the-admin-who-did-it",
        old_role=old_role,
        new_role=new_role,
        target_user_id=USER,
    )

    assert await rig.alerts() == expected


async def test_the_login_defences_credential_stuffing_detection_raises_an_alert(
    rig: Rig,
) -> None:
    await rig.emit(
        "suspicious_activity",
        details="credential stuffing: failed logins on 10 accounts from one IP; blocked",
    )

    assert await rig.alerts() == [f"credential_stuffing:{IP}"]


async def test_other_suspicious_activity_is_not_credential_stuffing(rig: Rig) -> None:
    await rig.emit("suspicious_activity", details="something else")

    assert await rig.alerts() == []


async def test_an_event_without_the_rules_key_counts_for_nobody(rig: Rig) -> None:
    await rig.emit("token_reuse_detected", details="reused")  # no user id

    assert await rig.alerts() == []


async def test_overrides_change_a_rules_threshold() -> None:
    rig = Rig(configure_rules({"auth_failures_from_ip": {"threshold": 3}}))

    await rig.failures(3)

    assert await rig.alerts() == [f"auth_failures_from_ip:{IP}"]


async def test_a_disabled_rule_raises_nothing() -> None:
    rig = Rig(configure_rules({"token_reuse": {"enabled": False}}))

    await rig.emit("token_reuse_detected", user_id=USER)

    assert await rig.alerts() == []


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"no_such_rule": {"threshold": 1}}, id="unknown-rule"),
        pytest.param({"token_reuse": {"event_type": "logout"}}, id="unknown-field"),
        pytest.param({"token_reuse": {"threshold": 0}}, id="threshold-zero"),
        pytest.param({"token_reuse": {"threshold": "5"}}, id="threshold-text"),
        pytest.param({"token_reuse": {"enabled": 1}}, id="enabled-number"),
        pytest.param({"token_reuse": {"severity": "urgent"}}, id="unknown-severity"),
        pytest.param({"token_reuse": {"window_seconds": 0}}, id="window-zero"),
        pytest.param({"token_reuse": {"cooldown_seconds": -1}}, id="cooldown-negative"),
    ],
)
def test_invalid_overrides_are_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="rule"):
        configure_rules(overrides)
