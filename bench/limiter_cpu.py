"""CPU (not wall time) per rate-limiter call, in process: what the limiter's one call a
request costs this process on the embedded default (``MemoryLimiter``) and on Redis
(``RedisLimiter``: one script call, batched per loop turn), as the guard makes it (two
checks: ``ip`` and ``reads``).

Three ways of calling, as a server might: one caller at a time; 64 callers that each
wait 0-1 ms between calls, so calls fall in different loop turns (small batches); and
64 callers in lockstep (batches of about 64). ``time.process_time`` over all calls,
medians of interleaved rounds. Redis at ``--redis-url``; keys under a random prefix,
deleted at the end.

    taskset -c 0 python3 -m uv run python bench/limiter_cpu.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from bastion._redis_client import connect
from bastion.throttle import Check, Escalation, Limiter, MemoryLimiter, Policy, RedisLimiter

IP = Policy("ip", 10**9, 60)
READS = Policy("reads", 10**9, 60)
NO_BLOCKS = Escalation(after=0)


def caller(limiter: Limiter, n: int) -> Callable[[], Awaitable[None]]:
    key = f"ip:198.51.100.{n % 256}"
    checks = [Check(IP, key), Check(READS, key)]

    async def call() -> None:
        if not (await limiter.acquire(checks, offender=key)).allowed:
            raise RuntimeError("refused: quotas too small?")

    return call


async def cpu_per_call(limiter: Limiter, mode: str, calls: int) -> float:
    async def one(n: int, count: int, stagger: bool) -> None:
        call = caller(limiter, n)
        for _ in range(count):
            if stagger:
                await asyncio.sleep(random.random() / 1000)
            await call()

    started = time.process_time()
    if mode == "one caller":
        await one(0, calls, stagger=False)
    else:
        per = calls // 64
        stagger = mode == "64 callers, staggered"
        await asyncio.gather(*(one(n, per, stagger) for n in range(64)))
        calls = per * 64
    return (time.process_time() - started) / calls * 1e6


async def measure(url: str, rounds: int, calls: int) -> None:
    prefix = f"bench-{secrets.token_hex(4)}:"
    limiters: dict[str, Limiter] = {
        "MemoryLimiter": MemoryLimiter(NO_BLOCKS),
        "RedisLimiter": RedisLimiter(
            connect(url, timeout=2.0), prefix=prefix, escalation=NO_BLOCKS, owns_client=True
        ),
    }
    modes = ["one caller", "64 callers, staggered", "64 callers in lockstep"]
    results: dict[tuple[str, str], list[float]] = {}
    try:
        for limiter in limiters.values():  # warm up: connections, the script loaded
            await cpu_per_call(limiter, "64 callers in lockstep", 640)
        for _ in range(rounds):
            for mode in modes:
                for name, limiter in limiters.items():
                    value = await cpu_per_call(limiter, mode, calls)
                    results.setdefault((name, mode), []).append(value)
    finally:
        for limiter in limiters.values():
            await limiter.aclose()
        client = aioredis.Redis.from_url(url)
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    print(f"{'CPU µs per call (median)':28s}" + "".join(f"{name:>16s}" for name in limiters))
    for mode in modes:
        cells = "".join(f"{statistics.median(results[(n, mode)]):16.1f}" for n in limiters)
        print(f"{mode:28s}{cells}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=3200)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    asyncio.run(measure(args.redis_url, args.rounds, args.calls))


if __name__ == "__main__":
    main()
