"""Limits through the ``limits`` library's storage: any URL it knows.

Used for what one Redis script cannot do: Redis Cluster (limits of one request live in
different hash slots) and Sentinel, through ``limits``' own clients, and as the measured
baseline in ``bench/limiter.py``. Moving-window counting: exact like GCRA at the
boundary, but each check costs three round trips (test, hit, the remaining count),
and two requests racing between test and hit can leave one policy's unit taken by a
refused request.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from limits import RateLimitItemPerSecond
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from bastion._redis_client import REDIS_PREFIX
from bastion.throttle._model import (
    Check,
    Escalation,
    Policy,
    PolicyState,
    StoreUnavailableError,
    Verdict,
    ceil_seconds,
)

__all__ = ["LimitsLimiter"]


def _item(policy: Policy) -> RateLimitItemPerSecond:
    return RateLimitItemPerSecond(policy.quota, policy.window)


class LimitsLimiter:
    def __init__(
        self, url: str, *, prefix: str = REDIS_PREFIX, escalation: Escalation | None = None
    ) -> None:
        """``url`` is a ``limits`` storage URL (``redis+cluster://``, ``redis+sentinel://``,
        ``memory://``...); the ``async+`` scheme prefix is added when missing."""
        url = url if url.startswith("async+") else f"async+{url}"
        # redis-py, the client the rest of Bastion uses (``limits`` would pick coredis).
        options = {"implementation": "redispy"} if "redis" in url.split("://")[0] else {}
        storage = storage_from_string(url, **options)
        if not isinstance(storage, Storage):
            raise ValueError(f"{url.split('://')[0]} is not an asyncio storage")
        self._storage = storage
        self._strategy = MovingWindowRateLimiter(storage)
        self._prefix = f"{prefix}rl"
        self._escalation = escalation or Escalation()

    def _key(self, name: str) -> str:
        return f"{self._prefix}:{name}"

    async def acquire(
        self, checks: Sequence[Check], *, offender: str | None, reads: Sequence[str] = ()
    ) -> Verdict:
        """``reads`` are not read here: :attr:`Verdict.reads` is None."""
        try:
            return await self._acquire(checks, offender)
        except StoreUnavailableError:
            raise
        except Exception as exc:  # the storages raise their clients' own errors
            raise StoreUnavailableError(repr(exc)) from exc

    async def _acquire(self, checks: Sequence[Check], offender: str | None) -> Verdict:
        block_key = self._key(f"block:{offender}")
        if offender and await self._storage.get(block_key) > 0:
            wait = (await self._storage.get_expiry(block_key) - time.time()) * 1000
            states = await self.peek(checks)
            return Verdict(False, states, max(1, ceil_seconds(wait)), (), blocked=True)
        refused = [
            check
            for check in checks
            if not await self._strategy.test(_item(check.policy), self._prefix, check.storage_key)
        ]
        if not refused:  # a race between test and hit can still refuse after others took
            for check in checks:
                item = _item(check.policy)
                if not await self._strategy.hit(item, self._prefix, check.storage_key):
                    refused.append(check)
        states = await self.peek(checks)
        if not refused:
            return Verdict(True, states)
        wait = max(s.reset for s, c in zip(states, checks, strict=True) if c in refused)
        level = await self._strike(offender) if offender else 0
        if level:
            wait = max(wait, self._escalation.block_seconds(level))
        violated = tuple(dict.fromkeys(c.policy.name for c in refused))
        return Verdict(False, states, max(1, wait), violated, escalated_to=level)

    async def _strike(self, offender: str) -> int:
        rules = self._escalation
        if rules.after <= 0:
            return 0
        strikes_key = self._key(f"strikes:{offender}")
        if await self._storage.incr(strikes_key, rules.window) < rules.after:
            return 0
        await self._storage.clear(strikes_key)
        level = await self._storage.incr(self._key(f"level:{offender}"), rules.decay)
        await self._storage.incr(self._key(f"block:{offender}"), rules.block_seconds(level))
        return level

    async def peek(self, checks: Sequence[Check]) -> tuple[PolicyState, ...]:
        states = []
        for check in checks:
            stats = await self._strategy.get_window_stats(
                _item(check.policy), self._prefix, check.storage_key
            )
            reset = ceil_seconds((stats.reset_time - time.time()) * 1000)
            states.append(PolicyState(check.policy, max(0, stats.remaining), reset))
        return tuple(states)

    async def reset(self, key: str, policy: Policy) -> None:
        await self._strategy.clear(_item(policy), self._prefix, Check(policy, key).storage_key)

    async def ping(self) -> bool:
        try:
            return bool(await self._storage.check())
        except Exception:
            return False

    async def aclose(self) -> None:
        # ``limits`` has no close; its Redis bridges keep the client as ``storage``.
        client = getattr(getattr(self._storage, "bridge", None), "storage", None)
        if client is not None and hasattr(client, "aclose"):
            await client.aclose()
