"""Security events: typed records through a pipeline of plain callables.

``EventLog.emit`` builds a :class:`~bastion.stores.SecurityEvent` in the contract's
shape, runs it through the processors (redaction first, then any added ones, after
structlog's processor model) and hands it to every sink: JSON lines on stdout and rows
in the event store by default. ``bastion.testing.capture_events()`` sees every event.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any, Literal, Protocol

from bastion.clock import Clock, SystemClock
from bastion.events._redact import REDACTED, redact_mapping, redact_text
from bastion.stores.base import EventStore, SecurityEvent

__all__ = [
    "REDACTED",
    "EventLog",
    "EventSink",
    "JSONLinesSink",
    "RequestContext",
    "StoreSink",
    "event_to_dict",
    "redact_event",
]

Severity = Literal["info", "low", "medium", "high", "critical"]
Processor = Callable[[SecurityEvent], SecurityEvent | None]

_logger = logging.getLogger("bastion.events")

DEFAULT_SEVERITY: dict[str, Severity] = {
    "auth_success": "info",
    "auth_failure": "medium",
    "token_refreshed": "info",
    "token_reuse_detected": "critical",
    "logout": "info",
    "user_registered": "info",
    "password_changed": "medium",
    "permission_denied": "medium",
    "rate_limit_exceeded": "low",
    "suspicious_activity": "high",
    "role_changed": "high",
    "account_disabled": "high",
    "account_enabled": "medium",
    "sessions_revoked": "medium",
    "account_locked": "high",
    "account_unlocked": "medium",
    "rate_limit_unavailable": "high",
    "rate_limit_store_down": "high",
    "rate_limit_store_recovered": "medium",
    "email_verified": "info",
    "password_reset_requested": "low",
    "password_change_failed": "medium",
    "session_revoked": "low",
    "email_failed": "medium",
    "email_suppressed": "low",
    "breach_check_unavailable": "medium",
    "upload_refused": "low",
    "share_granted": "low",
    "share_revoked": "low",
    "security_events_read": "low",
    "alert_raised": "high",
    "alert_delivery_failed": "high",
}

# Hooks that tests install through bastion.testing.capture_events().
_capture_hooks: list[list[SecurityEvent]] = []


@dataclass(frozen=True)
class RequestContext:
    """Where an event happened: filled by the web layer, plain data here."""

    ip_address: str | None = None
    endpoint: str | None = None
    method: str | None = None
    request_id: str | None = None


class EventSink(Protocol):
    async def write(self, event: SecurityEvent) -> None: ...


def event_to_dict(event: SecurityEvent) -> dict[str, Any]:
    """The contract's JSON shape: UTC timestamps with ``Z``, millisecond precision (the
    store's ``id`` is not part of it: a log line and a stored record look the same)."""
    data = {
        f.name: getattr(event, f.name)
        for f in dataclasses.fields(event)
        if f.name not in ("extra", "id")
    }
    data["timestamp"] = _rfc3339(event.timestamp)
    data.update(event.extra)
    return data


def _rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def redact_event(event: SecurityEvent) -> SecurityEvent:
    return dataclasses.replace(
        event, details=redact_text(event.details), extra=redact_mapping(event.extra)
    )


class JSONLinesSink:
    """One JSON object a line, to stdout by default."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream

    async def write(self, event: SecurityEvent) -> None:
        stream = self._stream or sys.stdout
        stream.write(json.dumps(event_to_dict(event), separators=(",", ":")) + "\n")
        stream.flush()


class StoreSink:
    """Rows in the event store (the durable record admins query)."""

    durable = True  # events stored with their change's transaction skip this sink

    def __init__(self, store: EventStore) -> None:
        self._store = store

    async def write(self, event: SecurityEvent) -> None:
        await self._store.append([event])


class EventLog:
    """Builds, redacts and fans out security events; a failing sink never fails a request."""

    def __init__(
        self,
        sinks: Sequence[EventSink] = (),
        *,
        processors: Sequence[Processor] = (),
        clock: Clock | None = None,
        max_pending: int = 10_000,
    ) -> None:
        """``max_pending`` bounds the writes :meth:`emit_soon` may have in flight; past
        it, events still reach the capture hooks and are counted in ``dropped``."""
        self._sinks = list(sinks)
        self._processors: list[Processor] = [redact_event, *processors]
        self._clock = clock or SystemClock()
        self._pending: set[asyncio.Task[None]] = set()
        self._max_pending = max_pending
        self.dropped = 0
        self._observers: list[Callable[[SecurityEvent], None]] = []

    def observe(self, observer: Callable[[SecurityEvent], None]) -> None:
        """Call ``observer`` with every event sent (metrics count them by type); it runs
        in the request, so it must be quick, and an error in it is logged, never raised."""
        self._observers.append(observer)

    @property
    def pending(self) -> int:
        """How many writes of :meth:`emit_soon` are in flight."""
        return len(self._pending)

    def build(
        self,
        event_type: str,
        *,
        context: RequestContext | None = None,
        user_id: str | None = None,
        details: str = "",
        severity: Severity | None = None,
        **extra: Any,
    ) -> SecurityEvent | None:
        """The processed event (redacted, ...), not yet sent anywhere; None if dropped.

        For events stored in the same transaction as their change: build, store with the
        change, then :meth:`publish` with ``stored=True``.
        """
        context = context or RequestContext()
        # Clipped to the stored columns' sizes: a hostile 10 kB path must not make the
        # database refuse, and so lose, the event about it.
        event: SecurityEvent | None = SecurityEvent(
            event_type=event_type[:64],
            timestamp=self._clock.now(),
            severity=severity or DEFAULT_SEVERITY.get(event_type, "info"),
            user_id=_clip(user_id, 64),
            ip_address=_clip(context.ip_address, 45),
            endpoint=_clip(context.endpoint, 512),
            method=_clip(context.method, 16),
            details=details[:1024],
            request_id=_clip(context.request_id, 64),
            extra=extra,
        )
        for processor in self._processors:
            assert event is not None
            event = processor(event)
            if event is None:
                return None
        return event

    async def publish(self, event: SecurityEvent, *, stored: bool = False) -> None:
        """Hand ``event`` to every sink (but the durable ones when it is ``stored``)."""
        self._sent(event)
        await self._write(event, skip_durable=stored)

    def emit_soon(
        self,
        event_type: str,
        *,
        context: RequestContext | None = None,
        user_id: str | None = None,
        details: str = "",
        severity: Severity | None = None,
        **extra: Any,
    ) -> SecurityEvent | None:
        """Like :meth:`emit`, but the sinks are written after the response, so that the
        event costs the request nothing (a denial answered as fast as a miss).
        :meth:`drain` waits for the writes; ``aclose`` of the runtime calls it."""
        event = self.build(
            event_type,
            context=context,
            user_id=user_id,
            details=details,
            severity=severity,
            **extra,
        )
        if event is not None:
            self._sent(event)
            if len(self._pending) >= self._max_pending:
                self.dropped += 1
                _logger.error("security event dropped, %d writes pending", len(self._pending))
                return event
            task = asyncio.get_running_loop().create_task(self._write(event))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
        return event

    async def drain(self) -> None:
        """Wait until every event of :meth:`emit_soon` is written."""
        while self._pending:
            await asyncio.gather(*list(self._pending))

    def _sent(self, event: SecurityEvent) -> None:
        _capture(event)
        for observer in self._observers:
            try:
                observer(event)
            except Exception:  # counting must not turn into a failed request
                _logger.exception("security event observer failed")

    async def _write(self, event: SecurityEvent, *, skip_durable: bool = False) -> None:
        for sink in self._sinks:
            if skip_durable and getattr(sink, "durable", False):
                continue
            try:
                await sink.write(event)
            except Exception:  # a broken sink must not turn into a failed request
                _logger.exception("security event sink %s failed", type(sink).__name__)

    async def emit(
        self,
        event_type: str,
        *,
        context: RequestContext | None = None,
        user_id: str | None = None,
        details: str = "",
        severity: Severity | None = None,
        **extra: Any,
    ) -> SecurityEvent | None:
        event = self.build(
            event_type,
            context=context,
            user_id=user_id,
            details=details,
            severity=severity,
            **extra,
        )
        if event is not None:
            await self.publish(event)
        return event


def _clip(value: str | None, size: int) -> str | None:
    return value[:size] if value is not None else None


def _capture(event: SecurityEvent) -> None:
    for hook in _capture_hooks:
        hook.append(event)
