"""The queue behind ``EventLog.emit_soon``: bounded, written in batches, never waiting.

Sinks here are plain recorders; the SQL stores under the same queue are tested in
``test_event_queue_stores`` and a killed service process in tests/system.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from bastion.errors import DatabaseUnavailableError
from bastion.events import EventLog, event_to_dict
from bastion.stores import SecurityEvent
from bastion.testing import capture_events


class Recorder:
    """Keeps every batch; ``hold`` makes writes wait until it is set."""

    def __init__(self, *, held: bool = False, failures: int = 0) -> None:
        self.batches: list[list[SecurityEvent]] = []
        self.hold = asyncio.Event()
        if not held:
            self.hold.set()
        self.failures = failures  # how many writes raise before they succeed
        self.calls = 0

    async def write(self, events: Sequence[SecurityEvent]) -> None:
        self.calls += 1
        await self.hold.wait()
        if self.failures:
            self.failures -= 1
            raise OSError("store unavailable")
        self.batches.append(list(events))

    @property
    def events(self) -> list[SecurityEvent]:
        return [event for batch in self.batches for event in batch]


def details(events: Sequence[SecurityEvent]) -> list[str]:
    return [event.details for event in events]


class Down(Recorder):
    """A sink whose database does not answer for its first ``outage`` writes."""

    def __init__(self, outage: int) -> None:
        super().__init__()
        self.outage = outage

    async def write(self, events: Sequence[SecurityEvent]) -> None:
        self.calls += 1
        if self.calls <= self.outage:
            raise DatabaseUnavailableError("database unavailable: ConnectionRefusedError")
        self.batches.append(list(events))


class DurableDown(Down):
    durable = True  # as the event store: events stored with their change skip it


async def test_an_unavailable_sink_keeps_the_batch_until_it_answers() -> None:
    sink = Down(outage=20)  # far more than the retries of a refusal
    log = EventLog([sink], retry_delays=(0, 0))

    for n in range(3):
        log.emit_soon("permission_denied", details=f"#{n}")
    await asyncio.wait_for(log.drain(), timeout=10)

    assert details(sink.events) == ["#0", "#1", "#2"]
    assert sink.calls == 21
    assert (log.failed, log.dropped) == (0, 0)


async def test_an_event_written_with_its_request_waits_for_an_unavailable_store() -> None:
    lines, store = Recorder(), DurableDown(outage=3)
    log = EventLog([lines, store], retry_delays=(0,))

    await log.emit("auth_success", details="in the outage")
    queued = log.pending
    await asyncio.wait_for(log.drain(), timeout=10)

    assert queued == 1
    assert details(store.events) == ["in the outage"]
    assert details(lines.events) == ["in the outage"]  # once: it went out at once
    assert log.failed == 0


async def test_at_shutdown_what_the_down_store_holds_back_reaches_the_log_lines() -> None:
    lines, store = Recorder(), Down(outage=10**9)
    log = EventLog([lines, store], batch_size=2, flush_timeout=0.2)

    for n in range(5):
        log.emit_soon("permission_denied", details=f"#{n}")
    await log.aclose()

    assert details(lines.events) == [f"#{n}" for n in range(5)]
    assert store.events == []
    assert log.failed == 5


async def test_a_burst_is_written_in_batches_in_order() -> None:
    sink = Recorder()
    log = EventLog([sink], batch_size=500)

    for n in range(1200):
        log.emit_soon("permission_denied", details=f"#{n}")
    queued = log.pending
    await log.drain()

    assert queued == 1200
    assert [len(batch) for batch in sink.batches] == [500, 500, 200]
    assert details(sink.events) == [f"#{n}" for n in range(1200)]
    assert (log.pending, log.dropped) == (0, 0)


async def test_what_arrives_while_a_batch_is_written_is_the_next_batch() -> None:
    sink = Recorder(held=True)
    log = EventLog([sink], batch_size=500)

    log.emit_soon("permission_denied", details="first")
    await asyncio.sleep(0)  # the writer takes the first event and waits on the sink
    for n in range(3):
        log.emit_soon("permission_denied", details=f"then {n}")
    sink.hold.set()
    await log.drain()

    assert [details(batch) for batch in sink.batches] == [
        ["first"],
        ["then 0", "then 1", "then 2"],
    ]


async def test_an_event_stays_queued_until_its_write_ends() -> None:
    # A process killed mid-write loses what is queued: the batch being written counts.
    sink = Recorder(held=True)
    log = EventLog([sink], queue_size=10)

    for _ in range(4):
        log.emit_soon("permission_denied")
    await asyncio.sleep(0.01)
    during = log.pending
    sink.hold.set()
    await log.drain()

    assert sink.calls == 1
    assert during == 4
    assert log.pending == 0


async def test_a_full_queue_drops_counts_and_reports_without_waiting() -> None:
    sink = Recorder(held=True)
    log = EventLog([sink], queue_size=3)

    with capture_events() as seen:
        for n in range(10):
            # emit_soon is synchronous: it cannot wait for the held sink.
            log.emit_soon("rate_limit_exceeded", details=f"#{n}")
        full = (log.pending, log.dropped)
        sink.hold.set()
        await log.drain()

    assert full == (3, 7)
    written = sink.events
    assert details(written[:3]) == ["#0", "#1", "#2"]
    report = written[3]
    assert report.event_type == "events_dropped"
    assert report.severity == "high"
    assert report.extra == {
        "count": 7,
        "reason": "queue_full",
        "types": {"rate_limit_exceeded": 7},
        "first": event_to_dict(seen[3])["timestamp"],
        "last": event_to_dict(seen[9])["timestamp"],
    }
    assert len(written) == 4
    # Every event still reached the capture hooks (and so the metrics and alert rules).
    assert [e.event_type for e in seen].count("rate_limit_exceeded") == 10
    assert [e.event_type for e in seen].count("events_dropped") == 1


async def test_drops_are_reported_once_a_run_not_once_an_event() -> None:
    sink = Recorder(held=True)
    log = EventLog([sink], queue_size=2)

    for _ in range(5):
        log.emit_soon("rate_limit_exceeded")
    sink.hold.set()
    await log.drain()
    for _ in range(2):
        log.emit_soon("rate_limit_exceeded")
    await log.drain()

    reports = [e for e in sink.events if e.event_type == "events_dropped"]
    assert [r.extra["count"] for r in reports] == [3]
    assert log.dropped == 3


async def test_a_failing_sink_is_retried_and_the_batch_written_once() -> None:
    sink = Recorder(failures=2)
    log = EventLog([sink], retry_delays=(0, 0, 0))

    log.emit_soon("permission_denied", details="kept")
    await log.drain()

    assert details(sink.events) == ["kept"]
    assert sink.calls == 3
    assert log.failed == 0


async def test_a_sink_that_keeps_failing_is_counted_reported_and_does_not_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken = Recorder(failures=1_000)
    other = Recorder()
    log = EventLog([broken, other], retry_delays=(0, 0))

    for _ in range(2):
        log.emit_soon("permission_denied")
    await asyncio.wait_for(log.drain(), timeout=5)

    # The batch three times, then each event once alone, then the report once.
    assert broken.calls == 3 + 2 + 1
    assert log.failed == 2 + 1
    report = other.events[-1]
    assert report.event_type == "events_dropped"
    assert (report.extra["count"], report.extra["reason"]) == (2, "write_failed")
    assert report.extra["types"] == {"permission_denied": 2}
    assert caplog.text.count("Recorder failed an event") == 2


async def test_drain_with_nothing_queued_returns_at_once() -> None:
    log = EventLog([Recorder()])

    await asyncio.wait_for(log.drain(), timeout=1)

    assert log.pending == 0


@pytest.mark.parametrize(("queue_size", "batch_size"), [(0, 1), (1, 0)])
def test_sizes_below_one_are_refused(queue_size: int, batch_size: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        EventLog(queue_size=queue_size, batch_size=batch_size)


async def test_closing_flushes_the_queue() -> None:
    sink = Recorder(held=True)
    log = EventLog([sink])
    for n in range(3):
        log.emit_soon("permission_denied", details=f"#{n}")

    closing = asyncio.create_task(log.aclose())
    await asyncio.sleep(0.01)
    waited = not closing.done()
    sink.hold.set()
    await closing

    assert waited
    assert details(sink.events) == ["#0", "#1", "#2"]


async def test_closing_gives_up_on_a_sink_that_never_answers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = EventLog([Recorder(held=True)], flush_timeout=0.05)
    for _ in range(3):
        log.emit_soon("permission_denied")

    await log.aclose()

    assert (log.pending, log.failed) == (0, 3)
    assert "3 security events not written at shutdown" in caplog.text


# -- what an attacker may send, and bugs, do not lose the others ------------------------


class Refusing(Recorder):
    """A store that refuses any batch holding an event of ``bad`` details (as PostgreSQL
    refuses a whole transaction for one value it cannot keep)."""

    def __init__(self, bad: str) -> None:
        super().__init__()
        self.bad = bad

    async def write(self, events: Sequence[SecurityEvent]) -> None:
        if any(e.details == self.bad for e in events):
            raise ValueError("refused")
        await super().write(events)


async def test_one_event_the_store_refuses_loses_only_itself() -> None:
    sink = Refusing("poison")
    log = EventLog([sink], retry_delays=(0,))

    for text in ("a", "poison", "b"):
        log.emit_soon("permission_denied", details=text)
    await log.drain()

    assert details(sink.events) == ["a", "b", "1 security events not written: write failed"]
    assert log.failed == 1


def test_text_a_store_cannot_keep_is_replaced() -> None:
    log = EventLog()

    event = log.build(
        "input_validation_failed",
        details="a\x00b",
        odd={"key\x00": ["\ud800", "ok"]},
    )

    assert event is not None
    assert event.details == "a\ufffdb"
    assert event.extra == {"odd": {"key\ufffd": ["?", "ok"]}}


async def test_a_failing_report_does_not_stop_the_writer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(event: SecurityEvent) -> SecurityEvent:
        if event.event_type == "events_dropped":
            raise RuntimeError("processor bug")
        return event

    sink = Recorder(held=True)
    log = EventLog([sink], processors=[broken], queue_size=1)
    log.emit_soon("alert_raised", details="first")
    log.emit_soon("alert_raised", details="dropped")  # full: a report is due
    sink.hold.set()
    await asyncio.sleep(0.01)
    log.emit_soon("alert_raised", details="after")
    await asyncio.wait_for(log.drain(), timeout=2)

    assert details(sink.events) == ["first", "after"]
    assert "loss report failed" in caplog.text


async def test_the_last_tenth_of_the_queue_is_kept_for_high_events() -> None:
    sink = Recorder(held=True)
    log = EventLog([sink], queue_size=20)

    for _ in range(25):
        log.emit_soon("input_validation_failed")  # low
    low = (log.pending, log.dropped)
    log.emit_soon("alert_raised")  # high
    log.emit_soon("token_reuse_detected")  # critical
    log.emit_soon("alert_raised")  # past the whole queue: dropped too
    sink.hold.set()
    await log.drain()

    assert low == (18, 7)
    kinds = [e.event_type for e in sink.events]
    assert kinds[18:] == ["alert_raised", "token_reuse_detected", "events_dropped"]
    gap = sink.events[-1].extra
    assert (gap["count"], gap["types"]) == (8, {"alert_raised": 1, "input_validation_failed": 7})
