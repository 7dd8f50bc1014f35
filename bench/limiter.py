"""What the rate limiter costs per request.

Measures, side by side in one run:

1. ``acquire`` alone, with the two checks a GET request gets from the guard's ``RateLimits``
   (policy ``ip`` and policy ``reads``, both 10**9 per 60 s so nothing is refused), for
   ``MemoryLimiter``, ``RedisLimiter`` (one Lua GCRA script), ``LimitsLimiter`` on Redis
   and ``LimitsLimiter`` on ``memory://``: microseconds per call; and, for reference, a bare
   redis-py ``PING`` with ``RedisLimiter``'s client options (one round trip, no script).
2. End to end: a one-route FastAPI app called in process through ``httpx.ASGITransport``
   with sequential requests, (a) bare, (b) behind the guard's ``RateLimits`` with
   ``MemoryLimiter``, (c) behind it with ``RedisLimiter``: requests per second, and the
   ratio to (a).
3. Redis round trips per call, in a separate untimed pass: counted on the client by
   wrapping redis-py's ``AbstractConnection.send_packed_command`` (one socket write per
   command, or per pipeline; each is awaited to its reply before the next, so writes =
   round trips), and cross-checked on the server with the ``INFO commandstats`` delta
   (which also counts the commands run inside Lua scripts; other clients of the same
   Redis would add to it, and the table says so when its EVALSHA or PING count disagrees).

The machine may be noisy: every configuration runs ``--reps`` short runs, interleaved (the
order rotates each repetition), and the tables give the median with the min-max range.
Every repetition of the ``acquire`` benchmark uses a fresh partition key, since the
``limits`` moving window keeps one entry per request and grows with the key's history.
Its Redis script also binary-searches that list over the whole quota, about log2(quota)
LINDEX per test or count: some 30 with the 10**9 quota here, 7 with a quota of 100.

Needs Redis (default ``redis://127.0.0.1:6379/0``); keys go under a random prefix
``bench-<hex>:`` and are deleted at the end. Run from the repository root::

    python3 -m uv run python bench/limiter.py            # one to two minutes
    python3 -m uv run python bench/limiter.py --quick    # 10-20 s, rougher
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import platform
import re
import secrets
import statistics
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import fastapi
import httpx
import limits
import redis
import redis.asyncio as aioredis
from fastapi import FastAPI
from redis.asyncio.connection import AbstractConnection

from bastion.events import EventLog
from bastion.fastapi.middleware import RateLimits
from bastion.fastapi.middleware.rate_limit import client_ip_of
from bastion.net import TrustedProxies
from bastion.throttle import (
    Check,
    Escalation,
    Limiter,
    LimitsLimiter,
    MemoryLimiter,
    Policy,
    RedisLimiter,
)

IP = Policy("ip", 10**9, 60)
READS = Policy("reads", 10**9, 60)
POLICIES = {"ip": IP, "reads": READS}
NO_BLOCKS = Escalation(after=0)
PING = "reference: redis-py PING"


# --- measurement helpers ------------------------------------------------------------


@dataclass
class Series:
    """The per-repetition results of one configuration (a rate or a time per call)."""

    name: str
    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def spread(self, fmt: str) -> str:
        return f"{min(self.values):{fmt}}-{max(self.values):{fmt}}"


async def timed(n: int, call: Callable[[], Awaitable[bool]]) -> float:
    """Seconds for ``n`` sequential awaits of ``call``; every call must succeed."""
    gc.collect()
    failed = 0
    start = time.perf_counter()
    for _ in range(n):
        if not await call():
            failed += 1
    elapsed = time.perf_counter() - start
    if failed:
        raise RuntimeError(f"{failed} of {n} calls were refused or failed: quotas too small?")
    return elapsed


def rotated(items: list[Any], rep: int) -> list[Any]:
    k = rep % len(items)
    return items[k:] + items[:k]


_COMMAND_NAME = re.compile(rb"\*\d+\r\n\$\d+\r\n([A-Za-z]+)\r\n")


@dataclass
class Traffic:
    writes: int = 0
    commands: Counter[str] = field(default_factory=Counter)


@contextmanager
def client_traffic() -> Iterator[Traffic]:
    """Count redis-py socket writes (= round trips) and the commands in them."""
    traffic = Traffic()
    original = AbstractConnection.send_packed_command

    async def counting(
        self: AbstractConnection, command: bytes | str | Iterable[bytes], *args: Any, **kw: Any
    ) -> None:
        traffic.writes += 1
        if isinstance(command, str):
            raw = command.encode()
        elif isinstance(command, bytes):
            raw = command
        else:
            command = list(command)
            raw = b"".join(bytes(chunk) for chunk in command)
        traffic.commands.update(m.decode().upper() for m in _COMMAND_NAME.findall(raw))
        await original(self, command, *args, **kw)

    AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]
    try:
        yield traffic
    finally:
        AbstractConnection.send_packed_command = original  # type: ignore[method-assign]


async def server_commands(admin: aioredis.Redis) -> Counter[str]:
    stats = await admin.info("commandstats")
    return Counter(
        {
            name.removeprefix("cmdstat_").upper(): int(value["calls"])
            for name, value in stats.items()
            if name != "cmdstat_info"
        }
    )


@dataclass
class RoundTrips:
    per_call: float
    client_commands: dict[str, float]
    server_per_call: float
    server_commands: dict[str, float]
    other_clients: bool


async def count_round_trips(
    admin: aioredis.Redis, n: int, call: Callable[[], Awaitable[bool]]
) -> RoundTrips:
    before = await server_commands(admin)
    with client_traffic() as traffic:
        for _ in range(n):
            await call()
    after = await server_commands(admin)
    server = after - before
    return RoundTrips(
        per_call=traffic.writes / n,
        client_commands={k: v / n for k, v in sorted(traffic.commands.items())},
        server_per_call=sum(server.values()) / n,
        server_commands={k: v / n for k, v in sorted(server.items())},
        # Commands no script here runs: the server's count is the client's unless others ran.
        other_clients=any(server[c] != traffic.commands[c] for c in ("EVALSHA", "PING")),
    )


def breakdown(commands: dict[str, float]) -> str:
    return " ".join(f"{name}x{count:g}" for name, count in commands.items())


# --- 1. acquire -----------------------------------------------------------------------


def acquirer(limiter: Limiter, partition: str) -> Callable[[], Awaitable[bool]]:
    """One GET request's limiter call, as the middleware makes it."""
    key = f"ip:{partition}"
    checks = [Check(IP, key), Check(READS, key)]

    async def call() -> bool:
        return (await limiter.acquire(checks, offender=key)).allowed

    return call


@asynccontextmanager
async def limiters(url: str, prefix: str) -> AsyncIterator[dict[str, Limiter]]:
    made: dict[str, Limiter] = {
        "MemoryLimiter": MemoryLimiter(NO_BLOCKS),
        "RedisLimiter (Lua GCRA)": RedisLimiter.from_url(url, prefix=prefix, escalation=NO_BLOCKS),
        "LimitsLimiter redis://": LimitsLimiter(url, prefix=prefix, escalation=NO_BLOCKS),
        "LimitsLimiter memory://": LimitsLimiter("memory://", prefix=prefix, escalation=NO_BLOCKS),
    }
    try:
        yield made
    finally:
        for limiter in made.values():
            await limiter.aclose()


Factory = Callable[[int], Callable[[], Awaitable[bool]]]  # repetition -> the call to time


def acquire_factories(made: dict[str, Limiter], ping: aioredis.Redis) -> dict[str, Factory]:
    def factory(limiter: Limiter) -> Factory:
        # A fresh partition per repetition (-1: the warm-up): see the module docstring.
        return lambda rep: acquirer(limiter, f"198.51.100.{rep % 256}")

    async def one_ping() -> bool:
        return bool(await ping.ping())

    factories = {name: factory(limiter) for name, limiter in made.items()}
    factories[PING] = lambda rep: one_ping
    return factories


async def bench_acquire(factories: dict[str, Factory], calls: int, reps: int) -> dict[str, Series]:
    series = {name: Series(name) for name in factories}
    for factory in factories.values():  # connect, load the scripts, warm the caches
        await timed(max(50, calls // 10), factory(-1))
    for rep in range(reps):
        for name in rotated(list(factories), rep):
            elapsed = await timed(calls, factories[name](rep))
            series[name].values.append(elapsed / calls * 1e6)
    return series


# --- 2. end to end --------------------------------------------------------------------


def make_app(limiter: Limiter | None) -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"status": "ok"}

    if limiter is not None:
        app.add_middleware(
            _Limited, limits=RateLimits(limiter=limiter, policies=POLICIES, events=EventLog([]))
        )
    return app


class _Limited:
    """The guard's rate-limit step alone, as the guard runs it (by IP, no token)."""

    def __init__(self, app: Any, *, limits: RateLimits) -> None:
        self.app, self._limits, self._proxies = app, limits, TrustedProxies()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})
        ip = client_ip_of(scope, self._proxies)
        route_class = self._limits.route_class(scope["method"], None)
        verdict = await self._limits.acquire(ip, route_class, None)
        if not await self._limits.refuse(scope, send, verdict, route_class, ip, None):
            await self.app(scope, receive, RateLimits.with_headers(send, verdict))


def requester(client: httpx.AsyncClient) -> Callable[[], Awaitable[bool]]:
    async def call() -> bool:
        response = await client.get("/ping")
        return response.status_code == 200 and response.content == b'{"status":"ok"}'

    return call


@asynccontextmanager
async def clients(url: str, prefix: str) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    redis_limiter = RedisLimiter.from_url(url, prefix=f"{prefix}e2e:", escalation=NO_BLOCKS)
    apps = {
        "(a) bare": make_app(None),
        "(b) + the guard's RateLimits, MemoryLimiter": make_app(MemoryLimiter(NO_BLOCKS)),
        "(c) + the guard's RateLimits, RedisLimiter": make_app(redis_limiter),
    }
    made = {
        name: httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench")
        for name, app in apps.items()
    }
    try:
        yield made
    finally:
        for client in made.values():
            await client.aclose()
        await redis_limiter.aclose()


async def bench_e2e(
    made: dict[str, httpx.AsyncClient], requests: int, reps: int
) -> dict[str, Series]:
    series = {name: Series(name) for name in made}
    for client in made.values():
        await timed(max(50, requests // 10), requester(client))
    for rep in range(reps):
        for name in rotated(list(made), rep):
            elapsed = await timed(requests, requester(made[name]))
            series[name].values.append(requests / elapsed)
    return series


# --- report ---------------------------------------------------------------------------


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        first, *rest = cells
        return "  ".join(
            [first.ljust(widths[0])] + [c.rjust(w) for c, w in zip(rest, widths[1:], strict=True)]
        )

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def report_acquire(series: dict[str, Series], trips: dict[str, RoundTrips]) -> str:
    rows = []
    for name, s in series.items():
        t = trips.get(name)
        rows.append(
            [
                name,
                f"{s.median:.1f}",
                s.spread(".1f"),
                f"{1e6 / s.median:,.0f}",
                f"{t.per_call:g}" if t else "-",
                f"{t.server_per_call:g}{' (!)' if t.other_clients else ''}" if t else "-",
            ]
        )
    headers = ["limiter", "us/call", "range", "calls/s", "round trips", "Redis cmds"]
    return table(headers, rows)


def report_e2e(series: dict[str, Series]) -> str:
    bare = next(iter(series.values())).median
    rows = [
        [
            name,
            f"{s.median:,.0f}",
            s.spread(",.0f"),
            f"{1e6 / s.median:.0f}",
            f"{1e6 / s.median - 1e6 / bare:+.0f}",
            f"{s.median / bare:.2f}",
        ]
        for name, s in series.items()
    ]
    headers = ["app", "req/s", "range", "us/req", "added us/req", "vs (a)"]
    return table(headers, rows)


def report_trips(trips: dict[str, RoundTrips]) -> str:
    lines = []
    for name, t in trips.items():
        lines.append(f"  {name}: {t.per_call:g} round trip(s) per call")
        lines.append(f"      client sent:  {breakdown(t.client_commands)}")
        lines.append(f"      Redis ran:    {breakdown(t.server_commands)}  (incl. inside scripts)")
        if t.other_clients:
            lines.append(
                "      (!) the server's EVALSHA/PING count differs: other clients were active"
            )
    return "\n".join(lines)


# --- main -----------------------------------------------------------------------------


async def delete_keys(admin: aioredis.Redis, prefix: str) -> int:
    """Every key holding the prefix (``limits`` puts its own ``LIMITS:`` in front)."""
    deleted = 0
    async for key in admin.scan_iter(match=f"*{prefix}*", count=1000):
        deleted += await admin.delete(key)
    return deleted


async def main(args: argparse.Namespace) -> None:
    prefix = f"bench-{secrets.token_hex(4)}:"
    admin = aioredis.Redis.from_url(args.redis_url)
    server = await admin.info("server")
    print(
        f"Python {platform.python_version()} ({sys.implementation.name}), "
        f"Redis {server['redis_version']} at {args.redis_url}, redis-py {redis.__version__}, "
        f"limits {limits.__version__}, FastAPI {fastapi.__version__}, httpx {httpx.__version__}"
    )
    print(
        f"{args.reps} interleaved repetitions of {args.calls} acquire calls / "
        f"{args.requests} requests each; medians (range = min-max); key prefix {prefix}\n"
    )
    # The same client options as RedisLimiter.from_url: one bare round trip, for reference.
    ping = aioredis.Redis.from_url(args.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        async with limiters(args.redis_url, prefix) as made:
            factories = acquire_factories(made, ping)
            acquire = await bench_acquire(factories, args.calls, args.reps)
            trips = {
                name: await count_round_trips(admin, args.count, factory(200))
                for name, factory in factories.items()
                if "redis" in name.lower()
            }
        async with clients(args.redis_url, prefix) as made_clients:
            e2e = await bench_e2e(made_clients, args.requests, args.reps)
            with_redis = list(made_clients)[-1]
            trips[f"HTTP request, {with_redis[4:]}"] = await count_round_trips(
                admin, args.count, requester(made_clients[with_redis])
            )
    finally:
        deleted = await delete_keys(admin, prefix)
        await ping.aclose()
        await admin.aclose()

    print(f"1. acquire() with two checks (ip + reads), {args.calls} calls per run")
    print(report_acquire(acquire, trips))
    print("   round trips: client socket writes per call; Redis cmds: INFO commandstats")
    print("   delta per call, commands run inside Lua scripts included\n")
    print(f"2. End to end: GET /ping through httpx.ASGITransport, {args.requests} per run")
    print(report_e2e(e2e))
    print(f"\n3. Redis traffic per call ({args.count} calls, untimed, counting wrapper on)")
    print(report_trips(trips))
    print(f"\nDeleted {deleted} Redis keys under {prefix}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter runs")
    parser.add_argument("--reps", type=int, help="repetitions per configuration (11)")
    parser.add_argument("--calls", type=int, help="acquire calls per run (1000)")
    parser.add_argument("--requests", type=int, help="HTTP requests per run (600)")
    parser.add_argument("--count", type=int, default=200, help="calls in the counting pass")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    quick = args.quick
    args.reps = args.reps or (3 if quick else 11)
    args.calls = args.calls or (300 if quick else 1000)
    args.requests = args.requests or (200 if quick else 600)
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
