"""A bounded set of background tasks: started without waiting, drained, closed.

The mail postman and the alert engine both run work after the response that must
neither grow without bound nor outlive shutdown by more than a budget.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

__all__ = ["BackgroundTasks"]


class BackgroundTasks:
    """At most ``max_pending`` tasks at once; ``label`` names them in the shutdown log."""

    def __init__(self, max_pending: int, *, label: str, logger: logging.Logger) -> None:
        self._max_pending = max_pending
        self._label = label
        self._logger = logger
        # Strong references: the loop keeps only weak ones to tasks.
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = False

    @property
    def pending(self) -> int:
        return len(self._tasks)

    @property
    def full(self) -> bool:
        """Whether a new task would be refused: closed, or ``max_pending`` under way."""
        return self.closed or len(self._tasks) >= self._max_pending

    def start(self, work: Coroutine[Any, Any, None], *, name: str) -> None:
        """Run ``work`` in the background (the caller checked :attr:`full` first)."""
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait until every task has finished."""
        while self._tasks:
            # asyncio.wait, not gather: cancelling drain() leaves the tasks running.
            await asyncio.wait(set(self._tasks))

    async def close(self, timeout: float) -> None:  # noqa: ASYNC109 (a shutdown budget)
        """Start no more, wait up to ``timeout`` seconds, cancel the rest."""
        self.closed = True
        if not self._tasks:
            return
        _done, left = await asyncio.wait(set(self._tasks), timeout=timeout)
        if left:
            self._logger.warning("cancelling %d %s at shutdown", len(left), self._label)
            for task in left:
                task.cancel()
            await asyncio.wait(left)
