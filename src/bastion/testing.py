"""Helpers for the tests of applications built on Bastion."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from bastion.clock import FrozenClock
from bastion.events import _capture_hooks
from bastion.stores.base import SecurityEvent

__all__ = ["FrozenClock", "capture_events"]


@contextmanager
def capture_events() -> Iterator[list[SecurityEvent]]:
    """Collect every security event emitted inside the block (after redaction).

    >>> with capture_events() as events:
    ...     ...  # drive the app
    >>> [e.event_type for e in events]
    """
    captured: list[SecurityEvent] = []
    _capture_hooks.append(captured)
    try:
        yield captured
    finally:
        _capture_hooks.remove(captured)
