"""The alert engine: sliding-window counts per (rule, key), in memory, bounded.

:meth:`AlertEngine.observe` is an :meth:`~bastion.events.EventLog.observe` hook: it runs
in the request that emitted the event, so it only counts and decides; storing the alert
and posting it to the webhook happen in background tasks (:meth:`drain` waits for them,
:meth:`aclose` at shutdown), after the pattern of :class:`bastion.mail.Postman`.

Memory is bounded whatever the traffic (OWASP API4:2023, unrestricted resource
consumption): a window keeps at most ``threshold`` times, windows idle for longer than
their rule's window and cooldown are dropped as new ones come, and at most ``max_keys``
are kept at all, the least recently seen going first. A flood of events from random
addresses therefore costs a fixed amount of memory; its only effect is that an evicted
key starts counting afresh (and, evicted during its cooldown, may alert once more).
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import uuid4

from bastion._background import BackgroundTasks
from bastion.alerts._mail import AlertMail
from bastion.alerts._rules import AlertRule
from bastion.alerts._webhook import AlertWebhook, DeliveryError
from bastion.clock import Clock, SystemClock
from bastion.errors import ServiceUnavailableError
from bastion.events import EventLog
from bastion.stores.alerts import Alert, AlertStore
from bastion.stores.base import SecurityEvent

__all__ = ["AlertEngine"]

_logger = logging.getLogger("bastion.alerts")
_KEY_SIZE = 128  # the stored column's size


@dataclass
class _Window:
    rule: AlertRule
    times: deque[datetime]
    seen_at: datetime
    fired_at: datetime | None = None
    expires: timedelta = field(init=False)

    def __post_init__(self) -> None:
        self.expires = timedelta(seconds=max(self.rule.window_seconds, self.rule.cooldown_seconds))


class AlertEngine:
    """Counts the events of ``rules``, raises deduplicated alerts, and sends them on:
    to ``store``, as an ``alert_raised`` event of the rule's severity in ``events``, by
    ``mail`` when there is one, and to ``webhook`` when there is one (a failed delivery
    is an ``alert_delivery_failed`` event; a failed email, ``email_failed``)."""

    def __init__(
        self,
        rules: Sequence[AlertRule],
        store: AlertStore,
        events: EventLog,
        *,
        webhook: AlertWebhook | None = None,
        mail: AlertMail | None = None,
        clock: Clock | None = None,
        max_keys: int = 10_000,
        max_pending: int = 1000,
    ) -> None:
        if max_keys < 1 or max_pending < 1:
            raise ValueError("max_keys and max_pending must be at least 1")
        self.rules = tuple(rule for rule in rules if rule.enabled)
        self._store = store
        self._events = events
        self._webhook = webhook
        self._mail = mail
        self._clock = clock or SystemClock()
        self._max_keys = max_keys
        self._windows: OrderedDict[tuple[str, str], _Window] = OrderedDict()
        self._tasks = BackgroundTasks(max_pending, label="alert deliveries", logger=_logger)
        self.evicted = 0  # windows dropped because ``max_keys`` were kept
        self.dropped = 0  # alerts not stored or sent because too many were pending

    @property
    def tracked(self) -> int:
        """How many (rule, key) windows are kept."""
        return len(self._windows)

    @property
    def pending(self) -> int:
        return self._tasks.pending

    def attach(self) -> None:
        """Observe every event of the event log."""
        self._events.observe(self.observe)

    def observe(self, event: SecurityEvent) -> None:
        """Count ``event`` for every rule that counts it; raise the alerts due."""
        rules = [rule for rule in self.rules if rule.counts(event)]
        if not rules:
            return
        now = self._clock.now()
        self._prune(now)
        for rule in rules:
            key = rule.key(event)
            if key is None:
                continue
            window = self._window(rule, key[:_KEY_SIZE], now)
            window.times.append(event.timestamp)
            start = now - timedelta(seconds=rule.window_seconds)
            while window.times and window.times[0] <= start:
                window.times.popleft()
            cooling = window.fired_at is not None and now < window.fired_at + timedelta(
                seconds=rule.cooldown_seconds
            )
            if len(window.times) >= rule.threshold and not cooling:
                window.fired_at = now
                self._raise(rule, key[:_KEY_SIZE], window, now)

    def _window(self, rule: AlertRule, key: str, now: datetime) -> _Window:
        name = (rule.name, key)
        window = self._windows.get(name)
        if window is None:
            while len(self._windows) >= self._max_keys:
                self._windows.popitem(last=False)
                self.evicted += 1
            window = self._windows[name] = _Window(rule, deque(maxlen=rule.threshold), now)
        else:
            self._windows.move_to_end(name)
            window.seen_at = now
        return window

    def _prune(self, now: datetime) -> None:
        """Drop the windows nobody has fed for longer than their window and cooldown
        (oldest first: they are at the front of the ordered dict)."""
        while self._windows:
            window = next(iter(self._windows.values()))
            if window.seen_at + window.expires > now:
                return
            self._windows.popitem(last=False)

    def _raise(self, rule: AlertRule, key: str, window: _Window, now: datetime) -> None:
        alert = Alert(
            id=uuid4(),
            rule=rule.name,
            key=key,
            count=len(window.times),
            window_seconds=rule.window_seconds,
            first_event_at=window.times[0],
            last_event_at=window.times[-1],
            severity=rule.severity,
            created_at=now,
        )
        self._events.emit_soon(
            "alert_raised",
            severity=rule.severity,
            details=(
                f"{rule.name}: {alert.count} {rule.event_type} events for {key} "
                f"within {rule.window_seconds} s"
            ),
            alert_id=str(alert.id),
            rule=rule.name,
            alert_key=key,
            count=alert.count,
            window_seconds=rule.window_seconds,
        )
        if self._tasks.full:
            self.dropped += 1
            _logger.error("alert %s not stored nor sent: %d pending", alert.id, self._tasks.pending)
            return
        self._tasks.start(self._send(alert), name=f"bastion.alerts:{rule.name}")

    async def _send(self, alert: Alert) -> None:
        try:
            await self._store.add(alert)
        except ServiceUnavailableError as exc:  # its store logs the outage, once
            _logger.warning("alert %s not stored: %s", alert.id, exc.reason)
        except Exception:  # the event and the webhook still carry the alert
            _logger.exception("alert %s not stored", alert.id)
        if self._mail is not None:
            self._mail.send(alert)  # posted: the mail's own tasks and retries
        if self._webhook is None:
            return
        try:
            await self._webhook.deliver(alert)
        except DeliveryError as exc:
            self._delivery_failed(alert, str(exc), exc.attempts)
        except Exception as exc:  # a bug must not kill the task silently
            _logger.exception("alert %s delivery failed", alert.id)
            self._delivery_failed(alert, type(exc).__name__, 1)

    def _delivery_failed(self, alert: Alert, reason: str, attempts: int) -> None:
        _logger.error("alert %s not delivered to the webhook: %s", alert.id, reason)
        self._events.emit_soon(
            "alert_delivery_failed",
            severity="high",
            details=f"alert {alert.id} ({alert.rule}) not delivered: {reason}",
            alert_id=str(alert.id),
            rule=alert.rule,
            attempts=attempts,
        )

    async def drain(self) -> None:
        """Wait until every alert raised so far is stored and sent (or given up)."""
        await self._tasks.drain()

    async def aclose(self, timeout: float = 15.0) -> None:  # noqa: ASYNC109 (a shutdown budget)
        """Raise no more background work, wait up to ``timeout`` s, cancel the rest."""
        try:
            await self._tasks.close(timeout)
        finally:
            if self._webhook is not None:
                await self._webhook.aclose()
