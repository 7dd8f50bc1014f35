"""The Redis limiter: every limit of a request, and the repeat-offender block, in one call.

Written here rather than taken from ``limits``: its strategies check one limit per call
and need a second call for what is left and when it resets, so a request under three
policies costs six round trips and the policies are not refused together (measured in
``bench/limiter.py``). This script answers the whole request in one round trip,
atomically, with the same GCRA as :class:`~bastion.throttle.MemoryLimiter`, on Redis's
clock so every instance agrees; it also reads the keys the caller names (the token's
revocation state), so a guarded request costs one round trip in all. ``limits`` still
serves Redis Cluster and Sentinel (:class:`~bastion.throttle.LimitsLimiter`), where one
script cannot span hash slots.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from typing import Any

from bastion._redis_client import REDIS_PREFIX, NoScriptError, Redis, RedisError, connect
from bastion.throttle._gcra import available
from bastion.throttle._model import (
    Check,
    Escalation,
    Policy,
    PolicyState,
    StoreUnavailableError,
    Verdict,
    ceil_seconds,
)

__all__ = ["RedisLimiter"]

# KEYS: block, level, strikes, then one per policy, then the keys to read along.
# ARGV: n, after, strike window ms, base ms, cap ms, decay ms, then quota and window ms per policy.
# Returns: allowed, wait ms, escalated level, blocked, then the value of each key read
# along (nil when missing), then remaining, reset ms, refused per policy.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = tonumber(ARGV[1])
local eps = 0.000001
local block_ttl = redis.call('PTTL', KEYS[1])
local allowed = block_ttl <= 0
local wait = 0
local out = {}
for j = 4 + n, #KEYS do
  out[#out + 1] = redis.call('GET', KEYS[j])
end
local tats = {}
local refused_any = false
for i = 1, n do
  local quota = tonumber(ARGV[5 + 2 * i])
  local window = tonumber(ARGV[6 + 2 * i])
  local interval = window / quota
  local tat = tonumber(redis.call('GET', KEYS[3 + i])) or now
  if tat < now then tat = now end
  local new_tat = tat + interval
  local remaining, reset, refused
  if new_tat - now <= window + eps then
    remaining = math.floor((window - (new_tat - now)) / interval + eps)
    reset = new_tat - now
    refused = 0
    tats[i] = new_tat
  else
    remaining = math.max(0, math.floor((window - (tat - now)) / interval + eps))
    reset = tat - now
    refused = 1
    refused_any = true
    wait = math.max(wait, tat + interval - window - now)
  end
  out[#out + 1] = remaining
  out[#out + 1] = math.ceil(reset)
  out[#out + 1] = refused
end
local escalated = 0
if not allowed then
  return {0, block_ttl, 0, 1, unpack(out)}
end
if not refused_any then
  for i = 1, n do
    redis.call('SET', KEYS[3 + i], tostring(tats[i]), 'PX', math.max(1, math.ceil(tats[i] - now)))
  end
  return {1, 0, 0, 0, unpack(out)}
end
local after = tonumber(ARGV[2])
if after > 0 then
  local strikes = redis.call('INCR', KEYS[3])
  if strikes == 1 then redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[3])) end
  if strikes >= after then
    redis.call('DEL', KEYS[3])
    escalated = redis.call('INCR', KEYS[2])
    redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[6]))
    local block = math.min(tonumber(ARGV[4]) * (2 ^ (escalated - 1)), tonumber(ARGV[5]))
    redis.call('SET', KEYS[1], '1', 'PX', block)
    wait = math.max(wait, block)
  end
end
return {0, math.ceil(wait), escalated, 0, unpack(out)}
"""

_PEEK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {now}
for i = 1, #KEYS do
  out[#out + 1] = redis.call('GET', KEYS[i]) or ''
end
return out
"""


class _Batched:
    """One script's calls, those made in the same turn of the event loop sent together:
    one pipeline (no transaction: each call is atomic by itself, as a script), one write
    and one read of the replies, on one pooled connection.

    Under load this is what redis-py's CPU a request mostly was: one pooled connection,
    one socket write and one wake-up per call (docs/performance.md). A lone call is one
    ``EVALSHA`` as before; each caller gets its own reply or error, and a batch that
    fails (Redis down, a timeout) fails every caller in it. ``EVALSHA`` on a Redis that
    lost its scripts loads it once and sends the refused calls again (redis-py's
    ``Script`` in a pipeline sends ``SCRIPT EXISTS`` first: a second round trip a batch).
    """

    def __init__(self, client: Redis, script: str) -> None:
        self._client = client
        self._script = script
        self._sha = hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()
        # The calls of this turn, and the loop they wait in: a call from another loop
        # (a closed one's calls never sent) starts a batch of its own.
        self._waiting: list[tuple[list[str], list[Any], asyncio.Future[Any]]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sending: set[asyncio.Task[None]] = set()

    async def __call__(self, keys: list[str], args: list[Any]) -> Any:
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[Any] = loop.create_future()
        if self._loop is not loop or not self._waiting:
            self._loop, self._waiting = loop, []
            loop.call_soon(self._send, self._waiting)  # after every call of this turn
        self._waiting.append((keys, args, reply))
        return await reply

    def _send(self, batch: list[tuple[list[str], list[Any], asyncio.Future[Any]]]) -> None:
        if batch is self._waiting:
            self._waiting = []
        task = asyncio.ensure_future(self._run(batch))
        self._sending.add(task)  # a reference until it is done
        task.add_done_callback(lambda done: self._settle(done, batch))

    def _settle(
        self,
        task: asyncio.Task[None],
        batch: list[tuple[list[str], list[Any], asyncio.Future[Any]]],
    ) -> None:
        """No caller waits forever: a batch cancelled before it answered (at shutdown,
        before it even started) fails its callers as a Redis that does not answer."""
        self._sending.discard(task)
        for _, _, reply in batch:
            if not reply.done():
                reply.set_exception(ConnectionError("the limiter's call was not sent"))

    async def _run(self, batch: list[tuple[list[str], list[Any], asyncio.Future[Any]]]) -> None:
        try:
            replies = await self._replies([(keys, args) for keys, args, _ in batch])
        except Exception as exc:  # every caller in the batch gets the failure
            replies = [exc] * len(batch)
        for (_, _, reply), value in zip(batch, replies, strict=True):
            if reply.done():  # its caller was cancelled meanwhile
                continue
            if isinstance(value, BaseException):
                reply.set_exception(value)
            else:
                reply.set_result(value)

    async def _replies(self, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        replies = await self._pipelined(calls)
        lost = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
        if lost:  # Redis restarted or SCRIPT FLUSH: load it, send those calls again
            await self._client.script_load(self._script)
            again = await self._pipelined([calls[i] for i in lost])
            for i, value in zip(lost, again, strict=True):
                replies[i] = value
        return replies

    async def _pipelined(self, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        if len(calls) == 1:
            keys, args = calls[0]
            try:
                return [await self._client.evalsha(self._sha, len(keys), *keys, *args)]
            except NoScriptError as exc:
                return [exc]
        pipe = self._client.pipeline(transaction=False)
        for keys, args in calls:
            pipe.evalsha(self._sha, len(keys), *keys, *args)
        return list(await pipe.execute(raise_on_error=False))


class RedisLimiter:
    """Limits shared by every instance that uses the same Redis and key prefix."""

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = REDIS_PREFIX,
        escalation: Escalation | None = None,
        owns_client: bool = False,
    ) -> None:
        """``owns_client``: close ``client`` on ``aclose`` (else its owner does)."""
        self._redis = client
        self._owns_client = owns_client
        self._prefix = f"{prefix}rl:"
        self._escalation = escalation or Escalation()
        self._acquire = _Batched(client, _ACQUIRE)
        self._peek = client.register_script(_PEEK)

    @classmethod
    def from_url(
        cls, url: str, *, prefix: str = REDIS_PREFIX, escalation: Escalation | None = None
    ) -> RedisLimiter:
        client = connect(url, timeout=1.0)
        return cls(client, owns_client=True, prefix=prefix, escalation=escalation)

    async def acquire(
        self, checks: Sequence[Check], *, offender: str | None, reads: Sequence[str] = ()
    ) -> Verdict:
        """``reads`` are whole key names (no prefix is added), read in the same script."""
        rules = self._escalation
        name = offender or "-"  # "-" is never an offender: its block key never exists
        keys = [f"{self._prefix}{part}:{name}" for part in ("block", "level", "strikes")]
        keys += [self._prefix + c.storage_key for c in checks]
        keys += reads
        args: list[int] = [
            len(checks),
            rules.after if offender else 0,
            rules.window * 1000,
            rules.base * 1000,
            rules.cap * 1000,
            rules.decay * 1000,
        ]
        for check in checks:
            args += [check.policy.quota, check.policy.window * 1000]
        try:
            raw = await self._acquire(keys, args)
        except (RedisError, OSError) as exc:
            raise StoreUnavailableError(repr(exc)) from exc
        read = tuple(raw[4 : 4 + len(reads)])
        allowed, wait, escalated, blocked = (int(v) for v in raw[:4])
        rest = [int(v) for v in raw[4 + len(reads) :]]
        states = tuple(
            PolicyState(check.policy, rest[3 * i], ceil_seconds(rest[3 * i + 1]))
            for i, check in enumerate(checks)
        )
        if allowed:
            return Verdict(True, states, reads=read)
        violated = tuple(
            dict.fromkeys(c.policy.name for i, c in enumerate(checks) if rest[3 * i + 2])
        )
        return Verdict(
            False,
            states,
            max(1, ceil_seconds(wait)),
            () if blocked else violated,
            blocked=bool(blocked),
            escalated_to=escalated,
            reads=read,
        )

    async def peek(self, checks: Sequence[Check]) -> tuple[PolicyState, ...]:
        try:
            now, *tats = await self._peek(keys=[self._prefix + c.storage_key for c in checks])
        except (RedisError, OSError) as exc:
            raise StoreUnavailableError(repr(exc)) from exc
        return tuple(
            available(float(tat) if tat else None, float(now), check.policy)
            for check, tat in zip(checks, tats, strict=True)
        )

    async def reset(self, key: str, policy: Policy) -> None:
        try:
            await self._redis.delete(self._prefix + Check(policy, key).storage_key)
        except (RedisError, OSError) as exc:
            raise StoreUnavailableError(repr(exc)) from exc

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    async def aclose(self) -> None:
        if self._owns_client:
            await self._redis.aclose()
