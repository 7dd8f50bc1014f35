"""What each step of the guard costs on its own, and what FastAPI itself costs around it:
µs of CPU per call, in process, for ``GET /item`` with a signed-in caller on the
embedded default (the apps of bench/run.py, the token cache warm as under load).

The guard's steps are called one at a time, as the guard's layer calls them, each in a
loop; the FastAPI rows are small apps called through their ASGI interface (bare
``GET /item``; the same with one dependency; the same behind one pure ASGI layer). Their
sum against the budget that 0.75 of bare FastAPI leaves is the limit of a guard built on
FastAPI's routing and dependencies (docs/performance.md).

    taskset -c 0 python3 -m uv run python bench/steps.py

Medians of interleaved rounds; compare rows of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "apps"))

import inprocess  # bench/inprocess.py: the ASGI request loop and the token
import run  # bench/run.py: settings, database


def _per_call(step: Callable[[], Any], count: int) -> float:
    started = time.process_time()
    for _ in range(count):
        step()
    return (time.process_time() - started) / count * 1e6


async def _per_await(step: Callable[[], Awaitable[Any]], count: int) -> float:
    started = time.process_time()
    for _ in range(count):
        await step()
    return (time.process_time() - started) / count * 1e6


def _guard_layer(app: Any) -> Any:
    from bastion.fastapi.guard_middleware import GuardMiddleware

    layer = app.middleware_stack or app.build_middleware_stack()
    while not isinstance(layer, GuardMiddleware):
        layer = layer.app
    return layer


def _small_apps() -> dict[str, Any]:
    """Bare ``GET /item``, with one dependency, and behind one pass-through layer."""
    from fastapi import Depends, FastAPI
    from fastapi.security import OAuth2PasswordBearer
    from item import ITEM

    bare = FastAPI()

    @bare.get("/item")
    async def item() -> dict[str, Any]:
        return ITEM

    async def dependency() -> None:
        return None

    one = FastAPI()

    @one.get("/item", dependencies=[Depends(dependency)])
    async def item_dep() -> dict[str, Any]:
        return ITEM

    scheme = OAuth2PasswordBearer(tokenUrl="/token", auto_error=False)
    bearer = FastAPI()

    @bearer.get("/item")
    async def item_bearer(token: str | None = Depends(scheme)) -> dict[str, Any]:
        return ITEM

    layered = FastAPI()
    layered.router.routes[:] = bare.router.routes
    layered.add_middleware(inprocess._Pass)
    return {
        "FastAPI: bare GET /item (a request)": bare,
        "FastAPI: the same with one dependency": one,
        "FastAPI: the same with a bearer-scheme parameter": bearer,
        "FastAPI: bare behind one pure ASGI layer": layered,
    }


async def measure(rounds: int, count: int) -> None:
    import guarded

    from bastion.fastapi.auth_result import AUTH_KEY, GuardResult
    from bastion.fastapi.middleware.rate_limit import client_ip_of
    from bastion.fastapi.problems import rate_headers
    from bastion.fastapi.transports import read_credential

    app = guarded.create()
    token = await inprocess._token(app)
    headers = [
        (b"host", b"bench"),
        (b"authorization", f"Bearer {token}".encode()),
        (b"user-agent", b"bench"),
    ]
    await inprocess.cpu_per_request(app, headers, 640)  # warm: table compiled, token cached
    layer = _guard_layer(app)
    guard, limits, router = layer._guard, layer._limits, app.router

    def scope() -> dict[str, Any]:
        return {
            "type": "http",
            "method": "GET",
            "path": "/item",
            "raw_path": b"/item",
            "root_path": "",
            "query_string": b"",
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "scheme": "http",
            "app": app,
            "state": {},
        }

    base = scope()
    entry, _, _ = guard.table.match(router, "GET", "/item", base)
    credential = layer._credential(base, verify=True)
    ip = client_ip_of(base, guard.proxies)
    verdict = await limits.acquire(ip, "reads", credential.claims)

    async def authorize() -> None:
        decided = {**base, AUTH_KEY: GuardResult(entry, credential, verdict)}
        await guard.authorize(decided)

    steps: dict[str, Callable[[], Any]] = {
        "guard: route match (the table)": lambda: guard.table.match(router, "GET", "/item", base),
        "guard: credential read": lambda: read_credential(base, guard.cookies),
        "guard: token verified (cache hit)": lambda: layer._verify(credential.token),
        "guard: client address": lambda: client_ip_of(scope(), guard.proxies),
        "guard: rate-limit header fields": lambda: rate_headers(verdict),
    }
    awaited: dict[str, Callable[[], Awaitable[Any]]] = {
        "guard: rate limits (2 GCRA checks)": lambda: limits.acquire(
            ip, "reads", credential.claims
        ),
        "guard: authenticate and decide": authorize,
    }
    apps = _small_apps()
    plain = [(b"host", b"bench")]
    results: dict[str, list[float]] = {n: [] for n in [*apps, *steps, *awaited]}
    results["guard: the whole layer (a request, less bare)"] = []
    only = [m for m in app.user_middleware if m.cls.__name__ == "GuardMiddleware"]
    full = app.user_middleware
    with contextlib.redirect_stdout(io.StringIO()):
        for _ in range(rounds):
            for name, small in apps.items():
                results[name].append(await inprocess.cpu_per_request(small, plain, count))
            for name, step in steps.items():
                results[name].append(_per_call(step, count * 4))
            for name, coro in awaited.items():
                results[name].append(await _per_await(coro, count * 4))
            app.user_middleware, app.middleware_stack = only, None
            guarded_cost = await inprocess.cpu_per_request(app, headers, count)
            app.user_middleware, app.middleware_stack = full, None
            bare_cost = results["FastAPI: bare GET /item (a request)"][-1]
            results["guard: the whole layer (a request, less bare)"].append(
                guarded_cost - bare_cost
            )
    await app.state.security.aclose()
    print(f"{'':48s} {'CPU µs':>8s}")
    for name, values in results.items():
        print(f"{name:48s} {statistics.median(values):8.1f}")
    bare = statistics.median(results["FastAPI: bare GET /item (a request)"])
    print(f"{'budget at 0.75 of bare (bare / 0.75 - bare)':48s} {bare / 0.75 - bare:8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=6400)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bastion-steps-"))
    database_url = f"sqlite+aiosqlite:///{work / 'bastion.db'}"
    env = run.bastion_env(work, database_url, None)
    with contextlib.redirect_stdout(io.StringIO()):
        run.migrate(database_url, work)
    os.environ.update(env)
    asyncio.run(measure(args.rounds, args.requests))


if __name__ == "__main__":
    main()
