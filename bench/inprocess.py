"""What each part of the guard costs, in process: CPU per request of ``GET /item``,
without HTTP, so the numbers are the app's own (no uvicorn, no wrk, no sockets to us).

The apps are those of bench/run.py: the bare FastAPI app, the guarded one
(bench/apps/guarded.py) and the guard as a library user installs it (``guard-install``,
bench/apps/installed.py: ``install(app, routers=())``, on the same database and keys).
Each is called through its ASGI interface by 64 concurrent tasks, as 64 wrk connections
would; the CPU time of the whole process is divided by the number of requests. Then
the guarded app is measured once without each of its middlewares in turn: the
difference is what that layer costs, including what it leaves for the layers after it.
The last rows are the cost of the ASGI plumbing alone: eight layers that only pass the
request on, and eight that also wrap ``send``, in front of the bare app.

    python3 -m uv run python bench/inprocess.py            # embedded default
    python3 -m uv run python bench/inprocess.py --shared   # PostgreSQL and Redis

Rounds are interleaved and the medians printed; run it with the server's CPU to itself
(``taskset -c 0``) and compare the rows of one run, not runs of different days.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "apps"))

import run  # bench/run.py: the same settings, database and token helpers

Scope = dict[str, Any]
ASGI = Callable[[Scope, Any, Any], Awaitable[None]]
CONCURRENCY = 64


async def _requests(app: ASGI, headers: list[tuple[bytes, bytes]], count: int) -> None:
    base: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/item",
        "raw_path": b"/item",
        "query_string": b"",
        "root_path": "",
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    for _ in range(count):
        await app({**base, "headers": list(headers)}, receive, send)
    if set(statuses) != {200}:
        raise RuntimeError(f"expected 200 only, got {sorted(set(statuses))}")


async def cpu_per_request(app: ASGI, headers: list[tuple[bytes, bytes]], count: int) -> float:
    """CPU µs per request, ``count`` requests from CONCURRENCY concurrent tasks."""
    per_task = count // CONCURRENCY
    started = time.process_time()
    await asyncio.gather(*(_requests(app, headers, per_task) for _ in range(CONCURRENCY)))
    return (time.process_time() - started) / (per_task * CONCURRENCY) * 1e6


class _Pass:
    def __init__(self, app: ASGI) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.app(scope, receive, send)


class _WrapSend(_Pass):
    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        started = False

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, receive, tracking_send)


def _layered(bare: Any, layer: type[_Pass], count: int = 8) -> Any:
    from fastapi import FastAPI

    app = FastAPI()
    app.router.routes[:] = bare.router.routes
    for _ in range(count):
        app.add_middleware(layer)
    return app


async def _token(app: Any) -> str:
    import httpx

    transport = httpx.ASGITransport(app=app)
    client = httpx.AsyncClient(transport=transport, base_url="http://bench")
    # The development outbox prints the sign-up email; it is not this report's.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        async with client:
            body = {"email": "bench@example.com", "password": run.PASSWORD}
            assert (await client.post("/auth/register", json=body)).status_code == 202
            login = await client.post("/auth/login", json=body)
    assert login.status_code == 200, login.text
    return str(login.json()["access_token"])


async def measure(rounds: int, count: int) -> None:
    import bare
    import guarded
    import installed

    app = guarded.create()
    library = installed.create()
    headers = [
        (b"host", b"bench"),
        (b"authorization", f"Bearer {await _token(app)}".encode()),
        (b"user-agent", b"bench"),
    ]
    plain = [(b"host", b"bench")]
    middleware = list(app.user_middleware)
    # The guard's own layer stays: without it the routes serve nothing (they read its result).
    guard = [m for m in middleware if m.cls.__name__ == "GuardMiddleware"]
    variants: dict[str, tuple[ASGI, list[tuple[bytes, bytes]], list[Any] | None]] = {
        "bare": (bare.app, plain, None),
        "guarded": (app, headers, middleware),
        "guard-install": (library, headers, None),
        **{
            f"guarded without {m.cls.__name__}": (
                app,
                headers,
                [other for other in middleware if other is not m],
            )
            for m in middleware
            if m not in guard
        },
        "guarded, the guard's layer only": (app, headers, guard),
        "bare + 8 pass-through layers": (_layered(bare.app, _Pass), plain, None),
        "bare + 8 layers wrapping send": (_layered(bare.app, _WrapSend), plain, None),
    }
    results: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, (target, request_headers, stack) in variants.items():
            if stack is not None:
                app.user_middleware = stack
                app.middleware_stack = None  # rebuilt on the next call
            results[name].append(await cpu_per_request(target, request_headers, count))
    app.user_middleware = middleware
    await app.state.security.aclose()
    await library.state.security.aclose()
    guarded_cost = statistics.median(results["guarded"])
    print(f"{'':40s} {'CPU µs/request':>14s} {'vs guarded':>11s}")
    for name, values in results.items():
        median = statistics.median(values)
        print(f"{name:40s} {median:14.1f} {median - guarded_cost:+11.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", action="store_true", help="PostgreSQL and Redis")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=6400)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bastion-inprocess-"))
    database = None
    if args.shared:
        database = f"bench_{secrets.token_hex(4)}"
        database_url = run.create_database(database)
        prefix = f"{database}:"
        env = run.bastion_env(work, database_url, prefix)
    else:
        database_url = f"sqlite+aiosqlite:///{work / 'bastion.db'}"
        env = run.bastion_env(work, database_url, None)
    try:
        run.migrate(database_url, work)
        os.environ.update(env)
        asyncio.run(measure(args.rounds, args.requests))
    finally:
        if database is not None:
            run.drop_database(database)
            run.delete_keys(f"{database}:")


if __name__ == "__main__":
    main()
