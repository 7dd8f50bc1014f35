"""The Redis limiter sends the script calls made in one turn of the event loop as one
pipeline. Each caller must still get its own answer: the counts are those of calls made
one by one, a Redis that lost its scripts is served again, a failure reaches every
caller of the batch (fail closed), and a caller that gives up disturbs no other."""

from __future__ import annotations

import asyncio
import secrets

import pytest
import redis.asyncio as aioredis

from bastion.throttle import Check, Escalation, Policy, RedisLimiter, StoreUnavailableError
from tests.conftest import REDIS_URL
from tests.redis_server import RedisServer

NO_BLOCKS = Escalation(after=0)


class _CountingPipelines:
    """Counts the pipelines and the single calls the limiter's client sends."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.pipelines = 0
        self.singles = 0
        pipeline, evalsha = client.pipeline, client.evalsha

        def counted_pipeline(*args: object, **kwargs: object) -> object:
            self.pipelines += 1
            return pipeline(*args, **kwargs)

        async def counted_evalsha(*args: object) -> object:
            self.singles += 1
            return await evalsha(*args)

        client.pipeline = counted_pipeline  # type: ignore[method-assign]
        client.evalsha = counted_evalsha  # type: ignore[method-assign]


async def test_concurrent_calls_share_pipelines_and_each_gets_its_own_count(
    redis_prefix: str,
) -> None:
    client = aioredis.Redis.from_url(REDIS_URL)
    sent = _CountingPipelines(client)
    limiter = RedisLimiter(
        client, prefix=f"{redis_prefix}{secrets.token_hex(4)}:", escalation=NO_BLOCKS
    )
    policy = Policy("writes", 10, 60)
    try:
        verdicts = await asyncio.gather(
            *(limiter.acquire([Check(policy, f"user:{i % 3}")], offender=None) for i in range(60))
        )
    finally:
        await client.aclose()

    # 60 calls, a few round trips: one pipeline for the calls of one loop turn.
    assert sent.pipelines + sent.singles < 10
    for user in range(3):
        mine = [v for i, v in enumerate(verdicts) if i % 3 == user]
        assert sum(v.allowed for v in mine) == 10  # exactly each partition's quota
        allowed = [v.states[0].remaining for v in mine if v.allowed]
        assert sorted(allowed, reverse=True) == list(range(9, -1, -1))  # each its own count


async def test_a_redis_that_lost_its_scripts_is_served_again(redis_prefix: str) -> None:
    limiter = RedisLimiter.from_url(REDIS_URL, prefix=f"{redis_prefix}{secrets.token_hex(4)}:")
    admin = aioredis.Redis.from_url(REDIS_URL)
    policy = Policy("writes", 100, 60)
    try:
        assert (await limiter.acquire([Check(policy, "user:a")], offender=None)).allowed
        await admin.script_flush()
        alone = await limiter.acquire([Check(policy, "user:a")], offender=None)
        await admin.script_flush()
        together = await asyncio.gather(
            *(limiter.acquire([Check(policy, "user:a")], offender=None) for _ in range(5))
        )
    finally:
        await admin.aclose()
        await limiter.aclose()
    assert alone.allowed
    assert alone.states[0].remaining == 98
    assert all(v.allowed for v in together)
    assert sorted(v.states[0].remaining for v in together) == [93, 94, 95, 96, 97]


async def test_a_failure_reaches_every_caller_of_the_batch(
    private_redis: RedisServer,
) -> None:
    limiter = RedisLimiter.from_url(private_redis.url, escalation=NO_BLOCKS)
    policy = Policy("writes", 100, 60)
    try:
        assert (await limiter.acquire([Check(policy, "user:a")], offender=None)).allowed
        private_redis.stop()
        outcomes = await asyncio.gather(
            *(limiter.acquire([Check(policy, f"user:{i}")], offender=None) for i in range(20)),
            return_exceptions=True,
        )
    finally:
        await limiter.aclose()
    assert all(isinstance(o, StoreUnavailableError) for o in outcomes), outcomes


async def test_a_caller_that_gives_up_disturbs_no_other(redis_prefix: str) -> None:
    limiter = RedisLimiter.from_url(REDIS_URL, prefix=f"{redis_prefix}{secrets.token_hex(4)}:")
    policy = Policy("writes", 100, 60)
    try:
        calls = [
            asyncio.ensure_future(limiter.acquire([Check(policy, "user:a")], offender=None))
            for _ in range(10)
        ]
        await asyncio.sleep(0)  # every call has asked; the batch is not sent yet
        calls[3].cancel()  # gives up waiting for its reply (a client went away)
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        after = await limiter.acquire([Check(policy, "user:a")], offender=None)
    finally:
        await limiter.aclose()
    assert isinstance(outcomes[3], asyncio.CancelledError)
    served = [o for i, o in enumerate(outcomes) if i != 3]
    assert all(v.allowed for v in served)
    assert sorted(v.states[0].remaining for v in served) == [90, 91, 92, 93, 94, 95, 97, 98, 99]
    # Its call was sent with the others and counted: a request the limiter let in.
    assert after.states[0].remaining == 89


@pytest.mark.parametrize("calls", [1, 2])
async def test_one_round_trip_a_call(redis_prefix: str, calls: int) -> None:
    client = aioredis.Redis.from_url(REDIS_URL)
    sent = _CountingPipelines(client)
    limiter = RedisLimiter(client, prefix=f"{redis_prefix}{secrets.token_hex(4)}:")
    policy = Policy("writes", 100, 60)
    try:
        for _ in range(calls):
            await limiter.acquire([Check(policy, "user:a")], offender=None)
    finally:
        await client.aclose()
    assert sent.singles == calls  # a lone call is one EVALSHA, no pipeline around it
    assert sent.pipelines == 0


def test_calls_a_closed_loop_left_behind_do_not_stall_the_next(redis_prefix: str) -> None:
    """A call made in a loop that closed before its batch was sent (a test's loop, a
    worker shutting down) must not keep later calls, in another loop, from being sent."""
    limiter = RedisLimiter.from_url(REDIS_URL, prefix=f"{redis_prefix}{secrets.token_hex(4)}:")
    policy = Policy("writes", 100, 60)

    left: list[asyncio.Future[object]] = []

    async def fire_and_forget() -> None:
        call = limiter.acquire([Check(policy, "user:a")], offender=None)
        left.append(asyncio.ensure_future(call))

    async def later() -> object:
        try:
            return await asyncio.wait_for(
                limiter.acquire([Check(policy, "user:a")], offender=None), 3
            )
        finally:
            await limiter.aclose()

    first = asyncio.new_event_loop()
    first.run_until_complete(fire_and_forget())  # asked; the loop stops before sending
    first.close()
    second = asyncio.new_event_loop()
    try:
        verdict = second.run_until_complete(later())
    finally:
        second.close()
    assert verdict.allowed  # type: ignore[attr-defined]


async def test_a_batch_cancelled_before_it_answers_fails_its_callers_closed(
    redis_prefix: str,
) -> None:
    """At shutdown the batch's own task may be cancelled before it sends: its callers
    get the store's failure (refused or degraded as configured), not a hang."""
    limiter = RedisLimiter.from_url(REDIS_URL, prefix=f"{redis_prefix}{secrets.token_hex(4)}:")
    policy = Policy("writes", 100, 60)
    try:
        calls = [
            asyncio.ensure_future(limiter.acquire([Check(policy, f"user:{i}")], offender=None))
            for i in range(3)
        ]
        await asyncio.sleep(0)  # every call has asked
        await asyncio.sleep(0)  # the batch's task exists, and has not started
        for task in list(limiter._acquire._sending):
            task.cancel()
        outcomes = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 3)
    finally:
        await limiter.aclose()
    assert all(isinstance(o, StoreUnavailableError) for o in outcomes), outcomes
