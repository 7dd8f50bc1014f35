"""``GET /tasks/{id}`` of the task service on PostgreSQL and Redis against the same read
unguarded (bench/apps/unguarded_tasks.py), in process: CPU per request of each, and of
the service without each of its layers in turn (the guard's own layer stays: the routes
read its result).

    taskset -c 0 python3 -m uv run python bench/service_inprocess.py [--rounds 5]

For counts that do not depend on the machine's load, run one app alone under callgrind,
twice, and divide the difference of the totals by the difference of the requests:

    valgrind --tool=callgrind python bench/service_inprocess.py --only service --requests 64
    valgrind --tool=callgrind python bench/service_inprocess.py --only service --requests 576

(``--only``: ``unguarded``, ``guard-layer`` or ``service``; 64 concurrent requests.)
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
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "apps"))

import run  # bench/run.py: settings, database, Redis keys

CONCURRENCY = 64
Headers = list[tuple[bytes, bytes]]


async def _requests(app: Any, path: str, headers: Headers, count: int, statuses: list[int]) -> None:
    base = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    for _ in range(count):
        await app({**base, "headers": list(headers)}, receive, send)


async def cpu_per_request(app: Any, path: str, headers: Headers, count: int) -> float:
    statuses: list[int] = []
    per_task = count // CONCURRENCY
    started = time.process_time()
    await asyncio.gather(
        *(_requests(app, path, headers, per_task, statuses) for _ in range(CONCURRENCY))
    )
    if set(statuses) != {200}:
        raise RuntimeError(f"expected 200 only, got {sorted(set(statuses))}")
    return (time.process_time() - started) / (per_task * CONCURRENCY) * 1e6


def _only_guard_layer(app: Any, middleware: list[Any]) -> None:
    app.user_middleware = [m for m in middleware if m.cls.__name__ == "GuardMiddleware"]
    app.middleware_stack = None  # rebuilt on the next call


async def measure(args: argparse.Namespace) -> None:
    import httpx
    import unguarded_tasks

    from bastion_tasks import create_app_from_env

    app = create_app_from_env()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            # The development outbox prints the sign-up email; it is not this report's.
            with (
                contextlib.redirect_stdout(io.StringIO()),
                contextlib.redirect_stderr(io.StringIO()),
            ):
                body = {"email": "bench@example.com", "password": run.PASSWORD}
                assert (await client.post("/auth/register", json=body)).status_code == 202
                token = (await client.post("/auth/login", json=body)).json()["access_token"]
                bearer = {"authorization": f"Bearer {token}"}
                created = await client.post("/tasks", json={"title": "t"}, headers=bearer)
        task = created.json()
        os.environ["BENCH_DATABASE_URL"] = os.environ["BASTION_DATABASE_URL"]
        os.environ["BENCH_USER_ID"] = task["owner_id"]
        plain = unguarded_tasks.create()
        path = f"/tasks/{task['id']}"
        signed = [(b"host", b"bench"), (b"authorization", bearer["authorization"].encode())]
        anonymous = [(b"host", b"bench")]
        middleware = list(app.user_middleware)
        for warm in (app, plain):
            await cpu_per_request(warm, path, signed if warm is app else anonymous, 640)
        if args.only:
            if args.only == "guard-layer":
                _only_guard_layer(app, middleware)
            target, headers = (plain, anonymous) if args.only == "unguarded" else (app, signed)
            await cpu_per_request(target, path, headers, args.requests)
            return
        results: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            variants: list[tuple[str, list[Any]]] = [("service", middleware)]
            variants += [
                (f"service without {m.cls.__name__}", [o for o in middleware if o is not m])
                for m in middleware
                if m.cls.__name__ != "GuardMiddleware"
            ]
            for name, stack in variants:
                app.user_middleware, app.middleware_stack = stack, None
                results.setdefault(name, []).append(
                    await cpu_per_request(app, path, signed, args.requests)
                )
            _only_guard_layer(app, middleware)
            results.setdefault("service, the guard's layer only", []).append(
                await cpu_per_request(app, path, signed, args.requests)
            )
            results.setdefault("unguarded", []).append(
                await cpu_per_request(plain, path, anonymous, args.requests)
            )
        app.user_middleware, app.middleware_stack = middleware, None
        service = statistics.median(results["service"])
        print(f"{'':44s} {'CPU µs/request':>14s} {'vs service':>11s}")
        for name, values in results.items():
            median = statistics.median(values)
            print(f"{name:44s} {median:14.1f} {median - service:+11.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=3200)
    parser.add_argument("--only", choices=["unguarded", "guard-layer", "service"])
    args = parser.parse_args()
    database = f"bench_{secrets.token_hex(4)}"
    work = Path(tempfile.mkdtemp(prefix="bastion-service-inprocess-"))
    database_url = run.create_database(database)
    try:
        run.migrate(database_url, work)
        os.environ.update(run.bastion_env(work, database_url, f"{database}:"))
        asyncio.run(measure(args))
    finally:
        run.drop_database(database)
        run.delete_keys(f"{database}:")


if __name__ == "__main__":
    main()
