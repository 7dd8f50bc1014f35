"""Failed-login counters, shared (Redis) or in process: the login defence's state.

A counter is a failure count and the time of the last failure; it is forgotten
``ttl`` seconds after the last failure. Per client IP, a window of the accounts it
failed on detects credential stuffing. ``claim`` marks a one-time value used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from bastion._redis_client import REDIS_PREFIX, Redis, RedisError
from bastion.clock import Clock, SystemClock
from bastion.throttle._model import StoreUnavailableError

__all__ = ["AttemptStore", "Counter", "MemoryAttemptStore", "RedisAttemptStore", "Stuffing"]


@dataclass(frozen=True)
class Counter:
    failures: int = 0
    last_ms: float = 0.0


@dataclass(frozen=True)
class Stuffing:
    """Record that ``ip`` failed on ``account``; block ``ip`` for ``block`` seconds once
    it has failed on ``accounts`` different accounts within ``window`` seconds."""

    ip: str
    account: str
    accounts: int
    window: int
    block: int


class AttemptStore(Protocol):
    async def read(self, keys: Sequence[str], ip: str) -> tuple[float, list[Counter], float]:
        """The store's time (ms), the counters, and the ms left of a stuffing block on
        ``ip`` (0: none)."""
        ...

    async def fail(
        self, keys: Sequence[str], ttl: int, stuffing: Stuffing | None
    ) -> tuple[list[int], int, bool]:
        """Count one failure on each key: the new counts, the distinct accounts ``ip``
        failed on in the window, and whether this failure started a stuffing block."""
        ...

    async def clear(self, keys: Sequence[str]) -> None: ...

    async def claim(self, value: str, ttl: int) -> bool:
        """True the first time ``value`` is claimed within ``ttl`` seconds."""
        ...

    async def aclose(self) -> None: ...


class MemoryAttemptStore:
    def __init__(self, *, clock: Clock | None = None, max_entries: int = 200_000) -> None:
        self._clock = clock or SystemClock()
        self._counters: dict[str, tuple[Counter, float]] = {}
        self._seen: dict[str, dict[str, float]] = {}
        self._blocks: dict[str, float] = {}
        self._claims: dict[str, float] = {}
        self._max = max_entries

    def _now(self) -> float:
        return self._clock.now().timestamp() * 1000

    def _counter(self, key: str, now: float) -> Counter:
        entry = self._counters.get(key)
        return entry[0] if entry and entry[1] > now else Counter()

    async def read(self, keys: Sequence[str], ip: str) -> tuple[float, list[Counter], float]:
        now = self._now()
        block = max(0.0, self._blocks.get(ip, 0) - now)
        return now, [self._counter(k, now) for k in keys], block

    async def fail(
        self, keys: Sequence[str], ttl: int, stuffing: Stuffing | None
    ) -> tuple[list[int], int, bool]:
        now = self._now()
        self._sweep(now)
        counts = []
        for key in keys:
            counter = Counter(self._counter(key, now).failures + 1, now)
            self._counters[key] = (counter, now + ttl * 1000)
            counts.append(counter.failures)
        if stuffing is None:
            return counts, 0, False
        seen = self._seen.setdefault(stuffing.ip, {})
        seen[stuffing.account] = now
        for account, at in list(seen.items()):
            if at <= now - stuffing.window * 1000:
                del seen[account]
        blocked = False
        if len(seen) >= stuffing.accounts and self._blocks.get(stuffing.ip, 0) <= now:
            self._blocks[stuffing.ip] = now + stuffing.block * 1000
            blocked = True
        return counts, len(seen), blocked

    async def clear(self, keys: Sequence[str]) -> None:
        for key in keys:
            self._counters.pop(key, None)

    async def claim(self, value: str, ttl: int) -> bool:
        now = self._now()
        self._sweep(now)
        if self._claims.get(value, 0) > now:
            return False
        self._claims[value] = now + ttl * 1000
        return True

    async def aclose(self) -> None:
        return None

    def _sweep(self, now: float) -> None:
        """Keep the store under its cap: drop what expired, then the oldest (which only
        forgets failures). Runs when the cap is passed and leaves a tenth free, so it
        costs nothing per call on average."""
        if (
            len(self._counters) + len(self._seen) + len(self._claims) + len(self._blocks)
            < self._max
        ):
            return
        self._counters = {k: v for k, v in self._counters.items() if v[1] > now}
        self._claims = {k: at for k, at in self._claims.items() if at > now}
        self._blocks = {k: at for k, at in self._blocks.items() if at > now}
        self._seen.clear()  # the stuffing windows restart: only forgets, never blocks more
        target = self._max * 9 // 10
        for store in (self._counters, self._claims):
            while len(store) > target // 2:
                del store[next(iter(store))]


_READ = """
local t = redis.call('TIME')
local out = {tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)}
for i = 1, #KEYS - 1 do
  local v = redis.call('HMGET', KEYS[i], 'f', 't')
  out[#out + 1] = tonumber(v[1]) or 0
  out[#out + 1] = tonumber(v[2]) or 0
end
out[#out + 1] = math.max(0, redis.call('PTTL', KEYS[#KEYS]))
return out
"""

# KEYS: the counters, then (with stuffing) the IP's account window and its block.
# ARGV: counters, ttl s, stuffing 0/1, account, window ms, accounts, block ms.
_FAIL = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = tonumber(ARGV[1])
local out = {}
for i = 1, n do
  out[#out + 1] = redis.call('HINCRBY', KEYS[i], 'f', 1)
  redis.call('HSET', KEYS[i], 't', now)
  redis.call('EXPIRE', KEYS[i], tonumber(ARGV[2]))
end
local distinct, blocked = 0, 0
if ARGV[3] == '1' then
  local window = tonumber(ARGV[5])
  redis.call('ZADD', KEYS[n + 1], now, ARGV[4])
  redis.call('ZREMRANGEBYSCORE', KEYS[n + 1], '-inf', now - window)
  redis.call('PEXPIRE', KEYS[n + 1], window)
  distinct = redis.call('ZCARD', KEYS[n + 1])
  if distinct >= tonumber(ARGV[6]) then
    if redis.call('SET', KEYS[n + 2], '1', 'PX', tonumber(ARGV[7]), 'NX') then blocked = 1 end
  end
end
out[#out + 1] = distinct
out[#out + 1] = blocked
return out
"""


class RedisAttemptStore:
    """The same, shared by every instance: one round trip (one script) per call."""

    def __init__(self, client: Redis, *, prefix: str = REDIS_PREFIX) -> None:
        """``client`` is shared (the revocation store's pool) and closed by its owner."""
        self._redis = client
        self._prefix = f"{prefix}login:"
        self._read = client.register_script(_READ)
        self._fail = client.register_script(_FAIL)

    def _k(self, key: str) -> str:
        return self._prefix + key

    async def read(self, keys: Sequence[str], ip: str) -> tuple[float, list[Counter], float]:
        try:
            now, *raw, block = await self._read(keys=[*map(self._k, keys), self._k(f"block:{ip}")])
        except (RedisError, OSError) as exc:
            raise StoreUnavailableError(repr(exc)) from exc
        counters = [Counter(int(raw[2 * i]), float(raw[2 * i + 1])) for i in range(len(keys))]
        return float(now), counters, float(block)

    async def fail(
        self, keys: Sequence[str], ttl: int, stuffing: Stuffing | None
    ) -> tuple[list[int], int, bool]:
        all_keys = [*map(self._k, keys)]
        args: list[str | int] = [len(keys), ttl, 0, "", 0, 0, 0]
        if stuffing is not None:
            all_keys += [self._k(f"seen:{stuffing.ip}"), self._k(f"block:{stuffing.ip}")]
            args = [
                len(keys),
                ttl,
                1,
                stuffing.account,
                stuffing.window * 1000,
                stuffing.accounts,
                stuffing.block * 1000,
            ]
        try:
            *counts, distinct, blocked = await self._fail(keys=all_keys, args=args)
        except (RedisError, OSError) as exc:
            raise StoreUnavailableError(repr(exc)) from exc
        return [int(c) for c in counts], int(distinct), bool(blocked)

    async def clear(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        try:
            await self._redis.delete(*map(self._k, keys))
        except (RedisError, OSError) as exc:
            raise StoreUnavailableError(repr(exc)) from exc

    async def claim(self, value: str, ttl: int) -> bool:
        try:
            return bool(await self._redis.set(self._k(f"claim:{value}"), b"1", ex=ttl, nx=True))
        except (RedisError, OSError) as exc:
            raise StoreUnavailableError(repr(exc)) from exc

    async def aclose(self) -> None:
        return None  # the client belongs to the revocation store
