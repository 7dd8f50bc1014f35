"""Every limiter, one body: exact counts at the boundary, all-or-nothing, escalation,
concurrency. ``redis`` is our script on the real server; ``limits-*`` go through the
``limits`` library's storages (memory, and the same real Redis)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from bastion.throttle import (
    Check,
    Escalation,
    Limiter,
    LimitsLimiter,
    MemoryLimiter,
    Policy,
    RedisLimiter,
)
from tests.conftest import REDIS_URL

LIMITERS = ["memory", "redis", "limits-memory", "limits-redis"]
NO_BLOCKS = Escalation(after=0)


async def _open(kind: str, prefix: str, escalation: Escalation) -> Limiter:
    if kind == "memory":
        return MemoryLimiter(escalation)
    if kind == "redis":
        return RedisLimiter.from_url(REDIS_URL, prefix=prefix, escalation=escalation)
    url = "memory://" if kind == "limits-memory" else REDIS_URL
    return LimitsLimiter(url, prefix=prefix, escalation=escalation)


@pytest.fixture(params=LIMITERS)
async def make_limiter(request: pytest.FixtureRequest, redis_prefix: str) -> AsyncIterator[object]:
    opened: list[Limiter] = []
    prefix = f"{redis_prefix}{secrets.token_hex(4)}:"

    async def make(escalation: Escalation = NO_BLOCKS) -> Limiter:
        limiter = await _open(request.param, prefix, escalation)
        opened.append(limiter)
        return limiter

    yield make
    for limiter in opened:
        await limiter.aclose()


async def test_exactly_the_quota_passes_then_refused_with_retry_after(make_limiter) -> None:
    limiter = await make_limiter()
    policy = Policy("writes", 5, 60)
    check = [Check(policy, "user:a")]
    remaining = []
    for _ in range(5):
        verdict = await limiter.acquire(check, offender="user:a")
        assert verdict.allowed
        remaining.append(verdict.states[0].remaining)
    assert remaining == [4, 3, 2, 1, 0]
    refused = await limiter.acquire(check, offender="user:a")
    assert not refused.allowed
    assert refused.violated == ("writes",)
    assert refused.states[0].remaining == 0
    assert 1 <= refused.retry_after <= 60
    assert 1 <= refused.states[0].reset <= 60
    # Another partition of the same policy is untouched.
    other = await limiter.acquire([Check(policy, "user:b")], offender="user:b")
    assert other.allowed
    assert other.states[0].remaining == 4


async def test_a_refused_request_takes_nothing_from_the_other_policies(make_limiter) -> None:
    limiter = await make_limiter()
    tight, loose = Policy("tight", 2, 60), Policy("loose", 10, 60)
    checks = [Check(tight, "k"), Check(loose, "k")]
    for _ in range(2):
        assert (await limiter.acquire(checks, offender="k")).allowed
    refused = await limiter.acquire(checks, offender="k")
    assert not refused.allowed
    assert refused.violated == ("tight",)
    (loose_state,) = await limiter.peek([Check(loose, "k")])
    assert loose_state.remaining == 8
    assert refused.closest is not None
    assert refused.closest.policy == tight


async def test_peek_takes_nothing_and_reset_forgets(make_limiter) -> None:
    limiter = await make_limiter()
    policy = Policy("reads", 3, 60)
    check = [Check(policy, "ip:1")]
    (fresh,) = await limiter.peek(check)
    assert fresh.remaining == 3
    await limiter.acquire(check, offender="ip:1")
    (state,) = await limiter.peek(check)
    assert state.remaining == 2
    await limiter.reset("ip:1", policy)
    (state,) = await limiter.peek(check)
    assert state.remaining == 3


async def test_parallel_requests_never_pass_more_than_the_quota(make_limiter) -> None:
    limiter = await make_limiter()
    policy = Policy("writes", 10, 60)
    verdicts = await asyncio.gather(
        *(limiter.acquire([Check(policy, "user:x")], offender="user:x") for _ in range(60))
    )
    assert sum(v.allowed for v in verdicts) == 10


async def test_repeat_offenders_are_blocked_for_doubling_times(make_limiter) -> None:
    limiter = await make_limiter(Escalation(after=3, window=60, base=1, cap=2, decay=60))
    policy = Policy("reads", 1, 1)
    check = [Check(policy, "ip:9")]
    assert (await limiter.acquire(check, offender="ip:9")).allowed
    first = [await limiter.acquire(check, offender="ip:9") for _ in range(3)]
    assert [v.escalated_to for v in first] == [0, 0, 1]
    assert not any(v.blocked for v in first)
    # Blocked: even a policy with room refuses, without naming a policy.
    roomy = [Check(Policy("other", 100, 60), "ip:9")]
    blocked = await limiter.acquire(roomy, offender="ip:9")
    assert not blocked.allowed
    assert blocked.blocked
    assert blocked.violated == ()
    assert blocked.retry_after == 1
    await asyncio.sleep(1.1)
    assert (await limiter.acquire(roomy, offender="ip:9")).allowed
    again = [await limiter.acquire(check, offender="ip:9") for _ in range(4)]
    assert again[0].allowed
    assert [v.escalated_to for v in again[1:]] == [0, 0, 2]
    assert again[-1].retry_after == 2  # doubled, and capped at 2
    # Another caller is not blocked.
    assert (await limiter.acquire(roomy, offender="ip:10")).allowed


async def test_keys_read_along_come_back_with_the_verdict_on_redis_only(
    make_limiter, redis_prefix: str
) -> None:
    limiter = await make_limiter()
    present, missing = f"{redis_prefix}{secrets.token_hex(4)}", f"{redis_prefix}absent"
    client = aioredis.Redis.from_url(REDIS_URL)
    await client.set(present, b"7|member|1", px=60_000)
    await client.aclose()
    policy = Policy("writes", 1, 60)
    check = [Check(policy, f"user:{secrets.token_hex(4)}")]

    allowed = await limiter.acquire(check, offender="user:a", reads=[present, missing])
    refused = await limiter.acquire(check, offender="user:a", reads=[present, missing])

    assert allowed.allowed
    assert not refused.allowed
    if isinstance(limiter, RedisLimiter):
        assert allowed.reads == refused.reads == (b"7|member|1", None)
        # The counts are unchanged by the reads around them.
        assert allowed.states[0].remaining == 0
        assert refused.violated == ("writes",)
    else:
        assert allowed.reads is None
        assert refused.reads is None
