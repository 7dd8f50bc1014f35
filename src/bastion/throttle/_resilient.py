"""Redis down: decide in process for a while, try Redis again, say so both ways.

While the shared store does not answer, :class:`ResilientLimiter` answers from its
in-process limiter and marks each verdict ``degraded`` (the web layer then refuses
credential routes, fail closed, and lets others through under per-process limits). It
retries the shared store every ``retry_after`` seconds, so recovery needs no restart,
and a failing store costs one failed call per interval, not one per request.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence

from bastion.throttle._model import (
    Check,
    Limiter,
    Policy,
    PolicyState,
    StoreUnavailableError,
    Verdict,
)

__all__ = ["ResilientLimiter"]

_logger = logging.getLogger("bastion.throttle")


class ResilientLimiter:
    def __init__(
        self,
        primary: Limiter,
        fallback: Limiter,
        *,
        retry_after: float = 1.0,
        on_change: Callable[[bool, str], None] | None = None,
    ) -> None:
        """``on_change(down, reason)`` is called when the shared store fails and when it
        answers again."""
        self._primary = primary
        self._fallback = fallback
        self._retry_after = retry_after
        self._on_change = on_change
        self._down = False
        self._next_try = 0.0

    @property
    def degraded(self) -> bool:
        return self._down

    def _failed(self, exc: StoreUnavailableError) -> None:
        self._next_try = time.monotonic() + self._retry_after
        if not self._down:
            self._down = True
            _logger.error("rate-limit store unavailable, limiting in process: %s", exc)
            if self._on_change:
                self._on_change(True, str(exc))

    def _answered(self) -> None:
        if self._down:
            self._down = False
            _logger.warning("rate-limit store answers again")
            if self._on_change:
                self._on_change(False, "")

    def _skip_primary(self) -> bool:
        return self._down and time.monotonic() < self._next_try

    async def acquire(
        self, checks: Sequence[Check], *, offender: str | None, reads: Sequence[str] = ()
    ) -> Verdict:
        """``reads`` go to the shared store; a degraded verdict has none."""
        if not self._skip_primary():
            try:
                verdict = await self._primary.acquire(checks, offender=offender, reads=reads)
            except StoreUnavailableError as exc:
                self._failed(exc)
            else:
                self._answered()
                return verdict
        verdict = await self._fallback.acquire(checks, offender=offender)
        return dataclasses.replace(verdict, degraded=True)

    async def peek(self, checks: Sequence[Check]) -> tuple[PolicyState, ...]:
        if not self._skip_primary():
            try:
                states = await self._primary.peek(checks)
            except StoreUnavailableError as exc:
                self._failed(exc)
            else:
                self._answered()
                return states
        return await self._fallback.peek(checks)

    async def reset(self, key: str, policy: Policy) -> None:
        await self._fallback.reset(key, policy)
        await self._primary.reset(key, policy)

    async def ping(self) -> bool:
        return await self._primary.ping()

    async def aclose(self) -> None:
        await self._primary.aclose()
        await self._fallback.aclose()
