"""The metrics core: who may read them, login outcomes, and the readings taken at
scrape time from the Argon2 pool and the event queue."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from bastion.config import BastionSettings, check_settings
from bastion.events import EventLog, RequestContext
from bastion.metrics import Metrics, login_outcome
from bastion.passwords import TEST_ONLY_INSECURE, PasswordHasher
from bastion.stores import SecurityEvent

PRODUCTION: dict[str, Any] = {
    "env": "production",
    "database_url": "postgresql+asyncpg://db/bastion?ssl=verify-full",
    "password_profile": "rfc9106-low-memory",
    "mail_backend": "smtp",
    "smtp_host": "smtp.example.org",
    "public_url": "https://tasks.example.org",
    "breached_passwords_api": True,
}
TOKEN = "a-long-random-scrape-token-for-prometheus"


def _settings(**values: Any) -> BastionSettings:
    return BastionSettings(_env_file=None, **{**PRODUCTION, **values})  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("values", "access"),
    [
        pytest.param({"env": "development"}, "public", id="development-without-token"),
        pytest.param({"env": "development", "metrics_token": TOKEN}, "token", id="dev-token"),
        pytest.param({}, "off", id="production-without-token"),
        pytest.param({"metrics_token": TOKEN}, "token", id="production-with-token"),
        pytest.param({"metrics_token": ""}, "off", id="production-with-empty-token"),
        pytest.param({"env": "development", "metrics_token": ""}, "public", id="dev-empty-token"),
        pytest.param({"metrics_enabled": False, "metrics_token": TOKEN}, "off", id="disabled"),
        pytest.param({"env": "development", "metrics_enabled": False}, "off", id="dev-disabled"),
    ],
)
def test_who_may_read_the_metrics(values: dict[str, Any], access: str) -> None:
    assert _settings(**values).metrics_access == access


@pytest.mark.parametrize("token", [None, ""], ids=["unset", "empty"])
def test_production_without_a_metrics_token_only_warns(token: str | None) -> None:
    findings = check_settings(_settings(metrics_token=token), keys_exist=True)

    assert [(f.setting, f.fatal) for f in findings] == [("BASTION_METRICS_TOKEN", False)]


@pytest.mark.parametrize(
    "values",
    [
        pytest.param({"metrics_token": TOKEN}, id="token"),
        pytest.param({"metrics_enabled": False}, id="disabled"),
    ],
)
def test_production_with_a_token_or_without_metrics_passes(values: dict[str, Any]) -> None:
    assert check_settings(_settings(**values), keys_exist=True) == []


def _event(
    event_type: str, details: str = "", endpoint: str = "/auth/login", **extra: Any
) -> SecurityEvent:
    log = EventLog()
    context = RequestContext(endpoint=endpoint)
    built = log.build(event_type, context=context, details=details, **extra)
    assert built is not None
    return built


@pytest.mark.parametrize(
    ("event_type", "outcome", "counted"),
    [
        pytest.param("auth_success", "success", "success", id="success"),
        pytest.param("auth_failure", "failure", "failure", id="failure"),
        *(
            pytest.param("auth_failure", o, o, id=o)
            for o in ("locked", "disabled", "unverified", "delayed", "challenge", "blocked")
        ),
        # Not from the closed set (no event says so today): a plain failure, no new label.
        pytest.param("auth_failure", "made-up", "failure", id="unknown-outcome"),
        pytest.param("auth_failure", None, "failure", id="no-outcome"),
        pytest.param("permission_denied", None, None, id="no-login-event"),
    ],
)
def test_a_login_event_is_counted_by_its_outcome(
    event_type: str, outcome: str | None, counted: str | None
) -> None:
    extra = {} if outcome is None else {"outcome": outcome}

    assert login_outcome(_event(event_type, **extra)) == counted


@pytest.mark.parametrize("endpoint", ["/metrics", "/tasks", None], ids=str)
def test_an_auth_failure_elsewhere_is_no_login(endpoint: str | None) -> None:
    event = _event("auth_failure", "access token refused (expired)", endpoint or "")

    assert login_outcome(event) is None


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


async def test_the_hash_queue_depth_and_waits_are_read_from_the_pool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hasher = PasswordHasher(TEST_ONLY_INSECURE, max_concurrency=1)
    release = threading.Event()
    hash_now = hasher._hash_sync

    def held(password: str) -> str:
        release.wait(5)
        return hash_now(password)

    monkeypatch.setattr(hasher, "_hash_sync", held)
    metrics = Metrics()
    metrics.watch_hasher(hasher)
    read = metrics.registry.get_sample_value
    try:
        running = asyncio.create_task(hasher.hash("first password"))
        waiting = asyncio.create_task(hasher.hash("second password"))
        await _until(lambda: hasher.queue_depth == 1)
        depth = read("bastion_password_hash_queue_depth")
        release.set()
        await asyncio.gather(running, waiting)
    finally:
        release.set()
        hasher.close()

    assert depth == 1
    assert read("bastion_password_hash_queue_depth") == 0
    assert read("bastion_password_hash_wait_seconds_count") == 2


class _HeldSink:
    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def write(self, events: Sequence[SecurityEvent]) -> None:
        await self.release.wait()


async def test_the_event_queue_and_dropped_writes_are_read_when_scraped() -> None:
    sink = _HeldSink()
    log = EventLog([sink], queue_size=1)
    metrics = Metrics()
    metrics.watch_events(log)
    read = metrics.registry.get_sample_value

    log.emit_soon("auth_failure")
    log.emit_soon("auth_failure")  # past queue_size: dropped
    depth, dropped = read("bastion_event_queue_depth"), read("bastion_events_dropped_total")
    sink.release.set()
    await log.drain()

    assert (depth, dropped) == (1, 1)
    assert read("bastion_event_queue_depth") == 0
    # A dropped write is still an event that happened.
    labels = {"event_type": "auth_failure", "severity": "medium"}
    assert read("bastion_security_events_total", labels) == 2


async def test_a_policy_nobody_configured_is_counted_as_other() -> None:
    log = EventLog()
    metrics = Metrics(policies=["reads"])
    metrics.watch_events(log)

    await log.emit("rate_limit_exceeded", violated_policies=["reads", "made-up"])

    read = metrics.registry.get_sample_value
    assert read("bastion_rate_limit_refusals_total", {"policy": "reads"}) == 1
    assert read("bastion_rate_limit_refusals_total", {"policy": "other"}) == 1
    assert read("bastion_rate_limit_refusals_total", {"policy": "made-up"}) is None


async def test_a_failing_observer_never_fails_the_event(caplog: pytest.LogCaptureFixture) -> None:
    log = EventLog()

    def broken(event: SecurityEvent) -> None:
        raise RuntimeError("broken observer")

    log.observe(broken)
    with caplog.at_level(logging.ERROR, logger="bastion.events"):
        event = await log.emit("auth_failure")

    assert event is not None
    assert "observer failed" in caplog.text


def test_an_unknown_decision_counts_as_none() -> None:
    metrics = Metrics()

    metrics.count_request("maybe", 503)

    read = metrics.registry.get_sample_value
    assert read("bastion_requests_total", {"decision": "none", "status": "5xx"}) == 1
