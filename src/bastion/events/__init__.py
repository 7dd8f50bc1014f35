"""Security events: typed records through a pipeline of plain callables.

``EventLog.emit`` builds a :class:`~bastion.stores.SecurityEvent` in the contract's
shape, runs it through the processors (redaction first, then any added ones, after
structlog's processor model) and hands it to every sink: JSON lines on stdout and rows
in the event store by default. ``bastion.testing.capture_events()`` sees every event.

High-volume events (denials, rate-limit refusals) go through :meth:`EventLog.emit_soon`:
a bounded in-memory queue that one writer task empties in batches, one store
transaction a batch. A request never waits on the queue; a full queue drops the event,
counts it and reports the drops as an ``events_dropped`` event (how many, which types,
from when to when). An event leaves the queue only once every sink has taken it, so a
process killed outright loses at most the queue's capacity of events; a sink that is
unavailable (a database outage) keeps its events queued until it answers again
(docs/errors-and-events.md, "Delivery").
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
import sys
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any, Protocol

from bastion.clock import Clock, SystemClock
from bastion.errors import ServiceUnavailableError
from bastion.events._redact import REDACTED, redact_mapping, redact_text
from bastion.stores.base import EventStore, SecurityEvent, Severity

if TYPE_CHECKING:
    from bastion.events.chain import ChainHead

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
    "events_dropped": "high",
    "events_purged": "medium",
    "key_rotated": "medium",
    "key_revoked": "high",
    "input_validation_failed": "low",
    "registration_conflict": "info",
    "account_linked": "medium",
    "account_unlinked": "medium",
    "mfa_enabled": "medium",
    "mfa_disabled": "high",
    "mfa_failed": "medium",
    "recovery_code_used": "high",
    "recovery_codes_replaced": "medium",
    "step_up_required": "low",
    "step_up": "info",
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
    """Where events go: ``write`` takes a batch, in order, and raises if it kept none:
    :class:`~bastion.errors.ServiceUnavailableError` when it cannot take any now (its
    database is down) and may later, so that the events wait for it."""

    async def write(self, events: Sequence[SecurityEvent]) -> None: ...


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


def storable_event(event: SecurityEvent) -> SecurityEvent:
    """Text every store keeps: no NUL (PostgreSQL refuses it in text and JSON, and would
    refuse the whole batch with it) and no lone surrogate; in ``extra``'s keys too."""
    fields = ("event_type", "user_id", "ip_address", "endpoint", "method", "details", "request_id")
    changes: dict[str, Any] = {name: _storable(getattr(event, name)) for name in fields}
    return dataclasses.replace(event, **changes, extra=_storable(event.extra))


def _storable(value: Any) -> Any:
    if isinstance(value, str):
        if value.isascii() and "\x00" not in value:
            return value  # the common case, at no cost
        return value.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(v) for v in value]
    return value


def redact_event(event: SecurityEvent) -> SecurityEvent:
    return dataclasses.replace(
        event, details=redact_text(event.details), extra=redact_mapping(event.extra)
    )


class JSONLinesSink:
    """One JSON object a line, to stdout by default.

    With ``head`` (the event chain's newest head, :mod:`bastion.events.chain`), each line
    also carries ``"chain": {"seq": n, "mac": "..."}``: the stored log's event count and
    last MAC when the line was written, published outside the database so that deleting
    the newest stored events shows (``bastion events verify --head n:mac``).
    """

    def __init__(
        self,
        stream: IO[str] | None = None,
        *,
        head: Callable[[], ChainHead | None] | None = None,
    ) -> None:
        self._stream = stream
        self._head = head

    async def write(self, events: Sequence[SecurityEvent]) -> None:
        stream = self._stream or sys.stdout
        head = self._head() if self._head is not None else None
        chain = {"chain": {"seq": head.seq, "mac": head.mac}} if head is not None else {}
        stream.write(
            "".join(
                json.dumps({**event_to_dict(e), **chain}, separators=(",", ":")) + "\n"
                for e in events
            )
        )
        stream.flush()


class StoreSink:
    """Rows in the event store (the durable record admins query)."""

    durable = True  # events stored with their change's transaction skip this sink

    def __init__(self, store: EventStore) -> None:
        self._store = store

    async def write(self, events: Sequence[SecurityEvent]) -> None:
        await self._store.append(events)


@dataclass
class _Loss:
    """The events not written for one reason since the last ``events_dropped`` report."""

    count: int = 0
    types: Counter[str] = field(default_factory=Counter)
    first: datetime | None = None
    last: datetime | None = None

    def add(self, event: SecurityEvent) -> None:
        self.count += 1
        self.types[event.event_type] += 1
        if self.first is None or event.timestamp < self.first:
            self.first = event.timestamp
        if self.last is None or event.timestamp > self.last:
            self.last = event.timestamp

    def record(self, reason: str) -> dict[str, Any]:
        """The report's fields: how many, why, of which types, from when to when."""
        return {
            "count": self.count,
            "reason": reason,
            "types": dict(sorted(self.types.items())),
            "first": _rfc3339(self.first) if self.first else None,
            "last": _rfc3339(self.last) if self.last else None,
        }


class EventLog:
    """Builds, redacts and fans out security events; a failing sink never fails a request."""

    def __init__(
        self,
        sinks: Sequence[EventSink] = (),
        *,
        processors: Sequence[Processor] = (),
        clock: Clock | None = None,
        queue_size: int = 10_000,
        batch_size: int = 500,
        retry_delays: Sequence[float] = (0.1, 0.5, 2.0),
        flush_timeout: float = 30.0,
    ) -> None:
        """``queue_size`` bounds the events :meth:`emit_soon` holds before they are
        written (and so what a killed process can lose); ``batch_size`` bounds one write;
        a sink that fails a batch is tried again after each of ``retry_delays``, and one
        that is unavailable (it raises ``ServiceUnavailableError``) after the same delays
        and then every last delay for as long as it is (at least 50 ms, at most 5 s);
        :meth:`aclose` waits at most ``flush_timeout`` seconds for the queue."""
        if queue_size < 1 or batch_size < 1:
            raise ValueError("queue_size and batch_size must be at least 1")
        self._sinks = list(sinks)
        # Redaction first; storable text last, whatever the added processors did.
        self._processors: list[Processor] = [redact_event, *processors, storable_event]
        self._clock = clock or SystemClock()
        self._queue: deque[SecurityEvent] = deque()
        self._queue_size = queue_size
        self._batch_size = batch_size
        self._retry_delays = tuple(retry_delays)
        self._flush_timeout = flush_timeout
        self._writer: asyncio.Task[None] | None = None
        self.dropped = 0  # events not queued because the queue was full
        self.failed = 0  # events a sink refused after every retry
        self._unreported = {"queue_full": _Loss(), "write_failed": _Loss()}
        # The sinks (by index) that took a queued event already: a request's event queued
        # because the store was down went to stdout at once, and must not go there twice.
        self._taken: dict[int, set[int]] = {}
        self._writing: int | None = None  # the sink the writer waits on
        self._observers: list[Callable[[SecurityEvent], None]] = []

    def observe(self, observer: Callable[[SecurityEvent], None]) -> None:
        """Call ``observer`` with every event sent (metrics count them by type); it runs
        in the request, so it must be quick, and an error in it is logged, never raised."""
        self._observers.append(observer)

    @property
    def pending(self) -> int:
        """How many events of :meth:`emit_soon` wait to be written (the queue's depth)."""
        return len(self._queue)

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
        """Like :meth:`emit`, but queued: the sinks are written in batches after the
        response, and the caller never waits (a denial answered as fast as a miss).

        A full queue drops the event from the sinks (capture hooks and observers still
        see it), counts it in ``dropped`` and reports the drops once there is room.
        :meth:`drain` waits until the queue is written; ``aclose`` of the runtime calls it.
        """
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
            self._enqueue(event)
        return event

    def _enqueue(self, event: SecurityEvent, taken: set[int] | None = None) -> None:
        """Queue ``event`` for the sinks but ``taken``, or drop and count it when full."""
        if len(self._queue) >= self._room_for(event):
            self.dropped += 1
            loss = self._unreported["queue_full"]
            loss.add(event)
            if loss.count == 1:
                _logger.error("security event queue full: dropping events")
        else:
            self._queue.append(event)
            if taken:
                self._taken[id(event)] = taken
        self._start_writer()

    def _room_for(self, event: SecurityEvent) -> int:
        """How full the queue may be when ``event`` comes: the last tenth is kept for
        high and critical events, so a flood of low ones cannot crowd out an alert."""
        if event.severity in ("high", "critical"):
            return self._queue_size
        return max(1, self._queue_size - self._queue_size // 10)

    async def drain(self) -> None:
        """Wait until every queued event is written (or given up after the retries)."""
        while self._queue or (self._writer is not None and not self._writer.done()):
            if self._writer is None or self._writer.done():
                self._start_writer()  # a writer that died (a bug) leaves its events queued
            assert self._writer is not None
            await asyncio.wait({self._writer})

    async def aclose(self) -> None:
        """Flush the queue at shutdown, waiting at most ``flush_timeout`` seconds (a store
        that is down must not hold the process forever); what is left is counted and logged."""
        try:
            await asyncio.wait_for(self.drain(), self._flush_timeout)
        except TimeoutError:
            if self._writer is not None:
                self._writer.cancel()
            left = list(self._queue)
            self.failed += len(left)
            self._queue.clear()
            _logger.error("%d security events not written at shutdown", len(left))
            # The store that held them up is down: the other sinks (the log lines) at
            # least keep them.
            for index, sink in enumerate(self._sinks):
                todo = [e for e in left if index not in self._taken.get(id(e), ())]
                stuck = index == self._writing or getattr(sink, "durable", False)
                if todo and not stuck:
                    with contextlib.suppress(Exception):
                        await sink.write(todo)
            self._taken.clear()

    def _start_writer(self) -> None:
        loop = asyncio.get_running_loop()
        writer = self._writer
        if writer is None or writer.done() or writer.get_loop() is not loop:
            self._writer = loop.create_task(self._write_queue())

    async def _write_queue(self) -> None:
        """Write the queue in batches until it is empty: whatever gathered while the last
        batch was written is the next batch. Events leave the queue after their write."""
        while self._queue:
            batch = list(itertools.islice(self._queue, self._batch_size))
            for index, sink in enumerate(self._sinks):
                todo = [e for e in batch if index not in self._taken.get(id(e), ())]
                if todo:
                    self._writing = index
                    await self._write_with_retries(sink, todo)  # never raises but on cancel
                    self._writing = None
                for event in todo:
                    self._taken.setdefault(id(event), set()).add(index)
            for event in batch:
                self._queue.popleft()
                self._taken.pop(id(event), None)
            try:
                await self._report_losses()
            except Exception:  # a failing processor must not stop the writer
                _logger.exception("security event loss report failed")

    async def _write_with_retries(
        self, sink: EventSink, batch: list[SecurityEvent], *, retry: bool = True
    ) -> None:
        delays = iter(self._retry_delays if retry else ())
        outage = 0  # attempts the sink was unavailable for
        while True:
            try:
                await sink.write(batch)
            except ServiceUnavailableError:
                # Not a refusal of these events: the sink cannot take any now (its
                # database is down). They wait in the queue, within its bound, and are
                # written when it answers; what the bound drops meanwhile is reported.
                outage += 1
                if outage == 1:
                    _logger.warning(
                        "security event sink %s unavailable: events wait in the queue",
                        type(sink).__name__,
                    )
                await asyncio.sleep(self._outage_delay(outage))
                continue
            except Exception:
                delay = next(delays, None)
                if delay is None:
                    break
                _logger.warning("security event sink %s failed; retrying", type(sink).__name__)
                await asyncio.sleep(delay)
                continue
            if outage:
                _logger.warning(
                    "security event sink %s answers again after %d attempts",
                    type(sink).__name__,
                    outage + 1,
                )
            return
        if len(batch) > 1:
            # One event the store refuses must not take the others down with it.
            for event in batch:
                await self._write_with_retries(sink, [event], retry=False)
            return
        _logger.error("security event sink %s failed an event", type(sink).__name__)
        self.failed += 1
        self._unreported["write_failed"].add(batch[0])

    def _outage_delay(self, attempt: int) -> float:
        """The wait before trying an unavailable sink again: the retry delays, then the
        last of them again and again, kept between 50 ms and 5 s."""
        delays = self._retry_delays or (1.0,)
        return min(5.0, max(0.05, delays[min(attempt, len(delays)) - 1]))

    async def _report_losses(self) -> None:
        """One ``events_dropped`` event for the drops and the failed writes since the
        last one. Drops are reported through the queue, once it has room again; failed
        writes are written once, not queued, so a store that stays down does not turn
        its own reports into an endless loop of failures."""
        for reason, loss in self._unreported.items():
            queued = reason == "queue_full"
            if not loss.count or (queued and len(self._queue) >= self._queue_size):
                continue
            self._unreported[reason] = _Loss()
            event = self.build(
                "events_dropped",
                details=f"{loss.count} security events not written: {reason.replace('_', ' ')}",
                **loss.record(reason),
            )
            if event is None:
                continue
            self._sent(event)
            if queued:
                self._queue.append(event)
            else:
                await self._write(event)

    def _sent(self, event: SecurityEvent) -> None:
        _capture(event)
        for observer in self._observers:
            try:
                observer(event)
            except Exception:  # counting must not turn into a failed request
                _logger.exception("security event observer failed")

    async def _write(self, event: SecurityEvent, *, skip_durable: bool = False) -> None:
        """Write ``event`` to every sink now; a sink that is unavailable (its database is
        down) gets it through the queue when it answers again, like a queued event."""
        taken: set[int] = set()
        for index, sink in enumerate(self._sinks):
            taken.add(index)
            if skip_durable and getattr(sink, "durable", False):
                continue
            try:
                await sink.write([event])
            except ServiceUnavailableError:
                taken.discard(index)
            except Exception:  # a broken sink must not turn into a failed request
                self.failed += 1
                _logger.exception("security event sink %s failed", type(sink).__name__)
        if len(taken) < len(self._sinks):
            self._enqueue(event, taken)

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
