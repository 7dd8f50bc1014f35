"""The one shape of the core's hooks: ``async def hook(event) -> None``.

A part that tells others about something it did keeps a :class:`Hooks` per kind of
news and offers ``on_<what>(hook)`` to register one; the news is a frozen dataclass
(what an ``EventLog`` record is to the audit trail, this is to code). A hook is told
after the fact: what it is told about has happened and stays done, so an error in a
hook is logged, never raised into the flow that told it (a login must answer the same
whether or not the mail of its lock could be posted). A hook runs in that flow, before
its answer: slow work belongs in the background (the postman's queue).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["Hook", "Hooks"]

_logger = logging.getLogger("bastion.accounts")
E = TypeVar("E")
Hook = Callable[[E], Awaitable[None]]


class Hooks(Generic[E]):
    """The hooks registered for one kind of news, run in the order they came."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._hooks: list[Hook[E]] = []

    def add(self, hook: Hook[E]) -> None:
        self._hooks.append(hook)

    async def run(self, event: E) -> None:
        for hook in self._hooks:
            try:
                await hook(event)
            except Exception:
                _logger.exception("a hook on %s failed", self._what)
