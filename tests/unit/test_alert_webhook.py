"""Alerts POSTed to a real HTTP server on loopback: signed, retried, given up, timed out."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from bastion.alerts import (
    DEFAULT_RULES,
    SIGNATURE_HEADER,
    Alert,
    AlertEngine,
    AlertWebhook,
    DeliveryError,
    MemoryAlertStore,
    alert_to_dict,
)
from bastion.clock import FrozenClock
from bastion.events import EventLog, RequestContext
from bastion.stores import SecurityEvent
from bastion.testing import capture_events
from tests.webhook import WebhookServer

SECRET = b"a-webhook-secret-of-at-least-32-bytes!!"
FAST = (0.01, 0.01, 0.01)
T0 = datetime(2026, 3, 1, 9, 0, 0, 250000, tzinfo=UTC)


def make_alert() -> Alert:
    return Alert(
        id=uuid4(),
        rule="token_reuse",
        key="7d8c0a4e-0000-4000-8000-000000000042",
        count=1,
        window_seconds=60,
        first_event_at=T0,
        last_event_at=T0,
        severity="critical",
        created_at=T0,
    )


def verify(secret: bytes, body: bytes, header: str) -> bool:
    """What a receiver does: recompute the HMAC of the raw body, compare in constant time."""
    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header)


async def test_the_body_is_the_alert_as_json() -> None:
    alert = make_alert()
    async with WebhookServer() as server:
        webhook = AlertWebhook(server.url, SECRET, retry_delays=FAST)
        await webhook.deliver(alert)
        await webhook.aclose()

    [(headers, body)] = server.requests

    assert headers["content-type"] == "application/json"
    assert json.loads(body) == alert_to_dict(alert)
    assert json.loads(body)["created_at"] == "2026-03-01T09:00:00.250Z"


async def test_the_signature_verifies_with_the_shared_secret() -> None:
    async with WebhookServer() as server:
        webhook = AlertWebhook(server.url, SECRET, retry_delays=FAST)
        await webhook.deliver(make_alert())
        await webhook.aclose()

    [(headers, body)] = server.requests

    assert verify(SECRET, body, headers[SIGNATURE_HEADER.lower()])


async def test_a_forged_body_fails_verification() -> None:
    async with WebhookServer() as server:
        webhook = AlertWebhook(server.url, SECRET, retry_delays=FAST)
        await webhook.deliver(make_alert())
        await webhook.aclose()
    [(headers, body)] = server.requests

    forged = body.replace(b'"critical"', b'"info"')

    assert not verify(SECRET, forged, headers[SIGNATURE_HEADER.lower()])
    assert not verify(b"another secret", body, headers[SIGNATURE_HEADER.lower()])


async def test_a_500_is_retried_until_a_success() -> None:
    async with WebhookServer(statuses=[500, 503, 200]) as server:
        webhook = AlertWebhook(server.url, SECRET, retry_delays=FAST)
        attempts = await webhook.deliver(make_alert())
        await webhook.aclose()

    assert attempts == 3
    assert len(server.requests) == 3
    assert len({body for _, body in server.requests}) == 1  # the same signed body each time


async def test_delivery_gives_up_after_the_retries() -> None:
    async with WebhookServer(statuses=[500]) as server:
        webhook = AlertWebhook(server.url, SECRET, retry_delays=FAST)
        with pytest.raises(DeliveryError, match="HTTP 500") as failure:
            await webhook.deliver(make_alert())
        await webhook.aclose()

    assert failure.value.attempts == 4
    assert len(server.requests) == 4


@pytest.mark.parametrize("status", [302, 400, 404], ids=["redirect", "bad-request", "not-found"])
async def test_a_final_answer_is_not_retried_nor_followed(status: int) -> None:
    async with WebhookServer(statuses=[status]) as server:
        webhook = AlertWebhook(server.url, SECRET, retry_delays=FAST)
        with pytest.raises(DeliveryError, match=str(status)):
            await webhook.deliver(make_alert())
        await webhook.aclose()

    assert len(server.requests) == 1


async def test_a_slow_server_hits_the_timeout() -> None:
    async with WebhookServer(delay=5.0) as server:
        webhook = AlertWebhook(server.url, SECRET, timeout=0.2, retry_delays=(0.01,))
        started = time.monotonic()
        with pytest.raises(DeliveryError, match="ReadTimeout"):
            await webhook.deliver(make_alert())
        elapsed = time.monotonic() - started
        await webhook.aclose()

    assert len(server.requests) == 2
    assert elapsed < 2.0


async def test_a_server_that_is_down_is_retried_then_given_up() -> None:
    async with WebhookServer() as server:
        url = server.url
    webhook = AlertWebhook(url, SECRET, retry_delays=FAST)

    with pytest.raises(DeliveryError, match="ConnectError") as failure:
        await webhook.deliver(make_alert())
    await webhook.aclose()

    assert failure.value.attempts == 4


async def _raise_token_reuse(webhook: AlertWebhook) -> list[SecurityEvent]:
    clock = FrozenClock(T0)
    log = EventLog([], clock=clock)
    engine = AlertEngine(DEFAULT_RULES, MemoryAlertStore(), log, webhook=webhook, clock=clock)
    engine.attach()
    with capture_events() as events:
        await log.emit(
            "token_reuse_detected",
            context=RequestContext(ip_address="192.0.2.5"),
            user_id="7d8c0a4e-0000-4000-8000-000000000042",
        )
        await engine.drain()
        await log.drain()
    await engine.aclose()
    return events


async def test_the_engine_posts_each_alert_to_the_webhook() -> None:
    async with WebhookServer() as server:
        events = await _raise_token_reuse(AlertWebhook(server.url, SECRET, retry_delays=FAST))

    [(headers, body)] = server.requests

    assert json.loads(body)["rule"] == "token_reuse"
    assert verify(SECRET, body, headers[SIGNATURE_HEADER.lower()])
    assert "alert_delivery_failed" not in [e.event_type for e in events]


async def test_a_delivery_given_up_is_an_alert_delivery_failed_event() -> None:
    async with WebhookServer(statuses=[500]) as server:
        events = await _raise_token_reuse(AlertWebhook(server.url, SECRET, retry_delays=FAST))

    [failed] = [e for e in events if e.event_type == "alert_delivery_failed"]

    assert failed.severity == "high"
    assert failed.extra["rule"] == "token_reuse"
    assert failed.extra["attempts"] == 4
    assert len(server.requests) == 4
