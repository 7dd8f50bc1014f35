"""``bastion events tail``: the latest stored security events, read from the database.

The events are read through the event store of the configured database (not over HTTP:
an operator on the host needs no admin account, and the service need not run). They
print oldest first, as ``tail`` does; ``--follow`` then polls for the events after the
last one shown, in the store's (timestamp, id) order, until interrupted.

Every field of an event may carry what a client sent (a path, a header): the table
shows control and format characters as escapes and never reads markup from the data,
so a logged ``ESC [ 2 J`` cannot clear or retitle the operator's terminal (CWE-150,
OWASP Logging Cheat Sheet: sanitize event data against log injection). JSON lines are
ASCII, with every other character escaped.
"""

from __future__ import annotations

import asyncio
import json
import sys
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from typing import IO, Protocol

from rich.console import Console
from rich.table import Table
from rich.text import Text

from bastion.events import event_to_dict
from bastion.stores import EventPosition, EventQuery, EventStore, SecurityEvent

__all__ = ["EventPrinter", "JSONLinesPrinter", "TablePrinter", "printable", "tail"]

Sleep = Callable[[float], Awaitable[None]]
_BATCH = 500  # events per query while catching up after a poll


class EventPrinter(Protocol):
    def print(self, events: Sequence[SecurityEvent]) -> None: ...


class JSONLinesPrinter:
    """One JSON object a line, in the shape of the service's own event log lines."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream

    def print(self, events: Sequence[SecurityEvent]) -> None:
        stream = self._stream or sys.stdout
        for event in events:
            line = json.dumps(event_to_dict(event), separators=(",", ":"), default=str)
            stream.write(line + "\n")
        stream.flush()


class TablePrinter:
    """A Rich table of the events; while following, each batch without the header."""

    _COLUMNS = ("time", "severity", "event", "user", "ip", "request", "details")

    def __init__(self, console: Console | None = None) -> None:
        self._console = console or Console(highlight=False)
        self._header = True

    def print(self, events: Sequence[SecurityEvent]) -> None:
        if not events and not self._header:
            return
        table = Table(show_header=self._header, box=None, pad_edge=False)
        for name in self._COLUMNS:
            # Nothing is ever cut to an ellipsis: a narrow terminal folds the cells.
            table.add_column(
                name,
                overflow="fold",
                no_wrap=name in ("time", "severity"),
                min_width=24 if name == "time" else None,
            )
        for event in events:
            request = " ".join(v for v in (event.method, event.endpoint) if v)
            cells = (
                event_to_dict(event)["timestamp"],
                event.severity,
                event.event_type,
                event.user_id or "-",
                event.ip_address or "-",
                request or "-",
                event.details,
            )
            table.add_row(*(Text(printable(cell)) for cell in cells))
        self._console.print(table)
        self._header = False


def printable(value: str) -> str:
    """``value`` with control, format and separator characters as escapes (``\\x1b``)."""
    return "".join(
        ch if unicodedata.category(ch) not in _UNPRINTABLE else ascii(ch)[1:-1] for ch in value
    )


_UNPRINTABLE = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


async def tail(
    store: EventStore,
    printer: EventPrinter,
    *,
    event_type: str | None = None,
    limit: int = 20,
    follow: bool = False,
    interval: float = 1.0,
    max_polls: int | None = None,
    sleep: Sleep = asyncio.sleep,
) -> None:
    """Print the ``limit`` latest events oldest first; with ``follow``, then every
    ``interval`` seconds the events stored after the last one printed (``max_polls``
    bounds the polls, for tests; ``sleep`` is injectable for the same reason)."""
    newest = await store.query(EventQuery(event_type=event_type, limit=max(limit, 1)))
    shown = newest[:limit]
    printer.print(shown[::-1])
    if not follow:
        return
    last = _position(newest[0]) if newest else None
    polls = 0
    while max_polls is None or polls < max_polls:
        await sleep(interval)
        polls += 1
        fresh = await _after(store, last, event_type)
        if fresh:
            printer.print(fresh)
            last = _position(fresh[-1])


async def _after(
    store: EventStore, last: EventPosition | None, event_type: str | None
) -> list[SecurityEvent]:
    """Every event after ``last`` (all of them when None), oldest first: newest-first
    pages walked back to ``last``, so that a burst larger than one page loses nothing."""
    found: list[SecurityEvent] = []
    before: EventPosition | None = None
    while True:
        page = await store.query(
            EventQuery(event_type=event_type, after=last, before=before, limit=_BATCH)
        )
        found += page
        if len(page) < _BATCH:
            return found[::-1]
        before = _position(page[-1])


def _position(event: SecurityEvent) -> EventPosition:
    assert event.id is not None  # a store numbers every event it returns
    return (event.timestamp, event.id)
