"""The in-process limiter: GCRA, the same algorithm and answers as the Redis script.

GCRA (the generic cell rate algorithm) keeps one number per partition, the theoretical
arrival time ``tat``: each request moves it ``window / quota`` ahead, and a request is
refused when that would put it more than ``window`` ahead of now. So ``quota`` requests
pass at once, then one more per ``window / quota``; never more than ``quota`` in any
window. Exact at the boundary, O(1) memory per partition.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from bastion.clock import Clock, SystemClock
from bastion.throttle._model import Check, Escalation, Policy, PolicyState, Verdict, ceil_seconds

__all__ = ["MemoryLimiter", "available", "gcra"]

_EPSILON = 1e-6


def gcra(tat: float | None, now: float, policy: Policy) -> tuple[bool, float, PolicyState, float]:
    """One step: (allowed, the new tat if allowed, the state after, ms until one unit frees)."""
    window = policy.window * 1000
    interval = window / policy.quota
    tat = now if tat is None or tat < now else tat
    new_tat = tat + interval
    if new_tat - now <= window + _EPSILON:
        remaining = math.floor((window - (new_tat - now)) / interval + _EPSILON)
        return True, new_tat, PolicyState(policy, remaining, ceil_seconds(new_tat - now)), 0.0
    remaining = max(0, math.floor((window - (tat - now)) / interval + _EPSILON))
    wait = tat + interval - window - now
    return False, tat, PolicyState(policy, remaining, ceil_seconds(tat - now)), wait


def available(tat: float | None, now: float, policy: Policy) -> PolicyState:
    """The state before a request: what is left now, without taking anything."""
    window = policy.window * 1000
    used = max(0.0, (tat or now) - now)
    remaining = math.floor((window - used) / (window / policy.quota) + _EPSILON)
    return PolicyState(policy, min(policy.quota, max(0, remaining)), ceil_seconds(used))


class _Expiring:
    """A dict whose entries expire; swept as it grows, capped so a flood of keys cannot
    exhaust memory (over the cap the oldest entries go, which only forgets limits)."""

    def __init__(self, max_entries: int) -> None:
        self._data: dict[str, tuple[float, float]] = {}
        self._max = max_entries

    def get(self, key: str, now: float) -> float | None:
        entry = self._data.get(key)
        if entry is None or entry[1] <= now:
            return None
        return entry[0]

    def ttl(self, key: str, now: float) -> float:
        entry = self._data.get(key)
        return 0.0 if entry is None or entry[1] <= now else entry[1] - now

    def set(self, key: str, value: float, now: float, ttl_ms: float) -> None:
        self._data.pop(key, None)
        self._data[key] = (value, now + ttl_ms)
        if len(self._data) > self._max:
            for stale in [k for k, (_, at) in self._data.items() if at <= now]:
                del self._data[stale]
            while len(self._data) > self._max:
                del self._data[next(iter(self._data))]

    def pop(self, key: str) -> None:
        self._data.pop(key, None)

    def __len__(self) -> int:
        return len(self._data)


class MemoryLimiter:
    """Limits for one process: the embedded default, and the fallback when Redis fails."""

    def __init__(
        self,
        escalation: Escalation | None = None,
        *,
        clock: Clock | None = None,
        max_entries: int = 200_000,
    ) -> None:
        self._escalation = escalation or Escalation()
        self._clock = clock or SystemClock()
        self._state = _Expiring(max_entries)
        # The system clock's milliseconds without a datetime (every request reads it).
        self._system = type(self._clock) is SystemClock

    def _now(self) -> float:
        if self._system:
            return time.time() * 1000
        return self._clock.now().timestamp() * 1000

    async def acquire(
        self, checks: Sequence[Check], *, offender: str | None, reads: Sequence[str] = ()
    ) -> Verdict:
        """``reads`` are not read here: :attr:`Verdict.reads` is None."""
        now = self._now()
        block_ttl = self._state.ttl(f"block:{offender}", now) if offender else 0.0
        steps = [gcra(self._state.get(c.storage_key, now), now, c.policy) for c in checks]
        states = tuple(step[2] for step in steps)
        if block_ttl > 0:
            return Verdict(False, states, ceil_seconds(block_ttl), (), blocked=True)
        refused = [(c, s) for c, s in zip(checks, steps, strict=True) if not s[0]]
        if not refused:
            for check, (_, new_tat, _, _) in zip(checks, steps, strict=True):
                self._state.set(check.storage_key, new_tat, now, new_tat - now)
            return Verdict(True, states)
        wait = max(step[3] for _, step in refused)
        violated = tuple(dict.fromkeys(c.policy.name for c, _ in refused))
        level = self._strike(offender, now) if offender else 0
        if level:
            wait = max(wait, self._escalation.block_seconds(level) * 1000)
        return Verdict(False, states, max(1, ceil_seconds(wait)), violated, escalated_to=level)

    def _strike(self, offender: str, now: float) -> int:
        """Count a refusal; return the new block level when it starts a block, else 0."""
        rules = self._escalation
        if rules.after <= 0:
            return 0
        key = f"strikes:{offender}"
        strikes = (self._state.get(key, now) or 0) + 1
        if strikes < rules.after:
            ttl = self._state.ttl(key, now) or rules.window * 1000
            self._state.set(key, strikes, now, ttl)
            return 0
        self._state.pop(key)
        level = int(self._state.get(f"level:{offender}", now) or 0) + 1
        self._state.set(f"level:{offender}", level, now, rules.decay * 1000)
        self._state.set(f"block:{offender}", 1, now, rules.block_seconds(level) * 1000)
        return level

    async def peek(self, checks: Sequence[Check]) -> tuple[PolicyState, ...]:
        now = self._now()
        return tuple(available(self._state.get(c.storage_key, now), now, c.policy) for c in checks)

    async def reset(self, key: str, policy: Policy) -> None:
        self._state.pop(Check(policy, key).storage_key)

    async def ping(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None
