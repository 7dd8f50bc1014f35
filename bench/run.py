"""What the guard costs over HTTP, side by side with the peers; writes bench/RESULTS.md.

Every server is a real process (uvicorn, one worker, pinned to CPU 0 with ``taskset``
where there are two CPUs or more) and every load is a real HTTP load generator (``wrk``,
pinned to CPU 1; installed from Debian's packages when missing). Scenarios:

1. ``GET /item`` on a bare FastAPI app: the ceiling, and every round's baseline;
2. the same handler behind Bastion's whole guard (bench/apps/guarded.py), on the
   embedded default: SQLite and in-process stores, no Redis; ``GET /item`` first in
   the route list as in the bare app, and (``guard-memory-last``) after the task
   service's routes, to show what route matching adds; and (``guard-install``) behind
   the guard as a library user installs it (bench/apps/installed.py): a plain FastAPI
   app with ``install(app, routers=())`` and ``GET /item`` needing READ;
3. the same with PostgreSQL and Redis;
4. the peers: fastapi-users' JWT dependency (SQLite), slowapi with Redis;
5. the real service on PostgreSQL and Redis: ``GET /tasks/{id}``, ``GET /tasks?limit=20``;
   and, as the baseline of the first, ``GET /tasks/{id}`` on an unguarded FastAPI app doing
   the same SQLAlchemy read on the same database (bench/apps/unguarded_tasks.py);
6. logins at the default Argon2 profile: throughput and latency;
7. the p99 of ``GET /tasks/{id}`` while 20 clients log in as fast as they can, against
   the p99 without them;
8. a burst of denials (403 ``permission_denied`` events): the event queue's depth and
   drops, read from the service's metrics while the burst runs;
9. the real service with two workers against one (neither pinned).

Plus the Redis round trips of one guarded request, counted on the server with MONITOR.

The machine is shared and noisy: each scenario runs ``--rounds`` times, the scenarios of
a group interleaved (the order rotates each round) with the bare baseline in every
round, and the report gives medians with the min-max range; a ratio is taken within a
round, then the median of those. The peers live in their own virtualenv (bench/.peers,
from bench/peers/requirements.txt), never in the service's dependencies.

    python3 -m uv run python bench/run.py            # about 12 minutes
    python3 -m uv run python bench/run.py --quick    # about 4 minutes, rougher
    python3 -m uv run python bench/run.py --only guard-install --rounds 1 --seconds 2 \
        --output /tmp/results.md                     # one scenario (and its baseline)

Needs PostgreSQL (``BENCH_PG_DSN``, default ``postgresql://127.0.0.1:5432/test``: a
database ``bench_<hex>`` is made and dropped) and Redis (``BENCH_REDIS_URL``: keys under
``bench-<hex>:``, deleted at the end).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
APPS = BENCH / "apps"
PEERS = BENCH / ".peers"
PG_DSN = os.environ.get("BENCH_PG_DSN", "postgresql://127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
PASSWORD = "a long benchmark passphrase 2026"
HUGE = "1000000000/minute"  # a quota nothing reaches: the limits are checked, never hit
POLICIES = ("ip", "reads", "writes", "deletes", "register", "login", "login-ip")
RATE_LIMITS = dict.fromkeys(POLICIES, HUGE)
CONNECTIONS = 64
# The scenarios ``--only`` can pick (the bare baseline of each group always runs).
GUARD_SCENARIOS = (
    "guard-memory",
    "guard-memory-last",
    "guard-install",
    "guard-pg-redis",
    "fastapi-users",
    "slowapi-redis",
)
PEER_SCENARIOS = ("fastapi-users", "slowapi-redis")
TASK_ONE = "GET /tasks/{id}"
TASK_UNGUARDED = "unguarded GET /tasks/{id}"
TASK_LIST = "GET /tasks?limit=20"
SERVICE_SCENARIOS = (
    TASK_ONE,
    TASK_UNGUARDED,
    TASK_LIST,
    "logins",
    "login-storm",
    "denials",
    "workers",
)
UNGUARDED_TARGET = 0.60  # GET /tasks/{id} / the same read unguarded


# --- processes -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(cpu: str | None) -> list[str]:
    return ["taskset", "-c", cpu] if cpu is not None else []


@dataclass
class Server:
    name: str
    argv: list[str]
    env: dict[str, str]
    cpu: str | None
    log: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        argv = [part.replace("{port}", str(self.port)) for part in self.argv]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                pinned(self.cpu) + argv,
                env=self.env,
                cwd=self.log.parent,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name} exited:\n{self.log.read_text()[-3000:]}")
            with suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise SystemExit(f"{self.name} not ready:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            try:
                self.process.wait(15)
                return
            except subprocess.TimeoutExpired:
                continue


# --- wrk -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    errors: int


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def parse_wrk(output: str) -> Run:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+([\d.]+\w+)", output).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+([\d.]+\w+)", output).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    return Run(
        rps,
        p50,
        p99,
        requests,
        int(non_2xx.group(1)) if non_2xx else 0,
        sum(int(n) for n in errors.groups()) if errors else 0,
    )


def wrk_argv(
    url: str,
    *,
    seconds: float,
    connections: int = CONNECTIONS,
    headers: dict[str, str] | None = None,
    script: Path | None = None,
) -> list[str]:
    argv = [*pinned(LOAD_CPU), "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency"]
    argv += ["--timeout", "10s"]
    for name, value in (headers or {}).items():
        argv += ["-H", f"{name}: {value}"]
    if script is not None:
        argv += ["-s", str(script)]
    return [*argv, url]


def wrk(url: str, *, expect: int | None = 200, **options: Any) -> Run:
    output = subprocess.run(
        wrk_argv(url, **options), capture_output=True, text=True, check=True
    ).stdout
    run = parse_wrk(output)
    if expect == 200 and (run.non_2xx or run.errors):
        raise SystemExit(f"{url}: {run.non_2xx} non-2xx answers, {run.errors} errors:\n{output}")
    return run


def post_script(folder: Path, path: str, body: dict[str, Any]) -> Path:
    script = folder / f"post-{secrets.token_hex(4)}.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(json.dumps(body))}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.path = "{path}"\n'
    )
    return script


# --- setup of the apps -----------------------------------------------------------------


def bastion_token(url: str, email: str) -> str:
    with httpx.Client(base_url=url, timeout=30) as client:
        registered = client.post("/auth/register", json={"email": email, "password": PASSWORD})
        assert registered.status_code == 202, registered.text
        login = client.post("/auth/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200, login.text
        return str(login.json()["access_token"])


def fastapi_users_token(url: str) -> str:
    with httpx.Client(base_url=url, timeout=30) as client:
        body = {"email": "bench@example.com", "password": PASSWORD}
        assert client.post("/auth/register", json=body).status_code == 201
        form = {"username": body["email"], "password": PASSWORD}
        login = client.post("/auth/jwt/login", data=form)
        assert login.status_code == 200, login.text
        return str(login.json()["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def ensure_wrk() -> None:
    if shutil.which("wrk"):
        return
    print("installing wrk from Debian's packages ...", flush=True)
    install = ["apt-get", "install", "-y", "-qq", "wrk"]
    if subprocess.run(install, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(install, check=True, capture_output=True)


def ensure_peers() -> Path:
    python = PEERS / "bin" / "python"
    stamp = PEERS / "requirements.txt"
    wanted = (BENCH / "peers" / "requirements.txt").read_text()
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    print("installing the peers into bench/.peers ...", flush=True)
    uv = [sys.executable, "-m", "uv"]
    if subprocess.run([*uv, "--version"], capture_output=True).returncode != 0:
        uv = ["uv"]
    subprocess.run([*uv, "venv", "-q", "--python", sys.executable, str(PEERS)], check=True)
    subprocess.run(
        [
            *uv,
            "pip",
            "install",
            "-q",
            "--python",
            str(python),
            "-r",
            str(BENCH / "peers" / "requirements.txt"),
        ],
        check=True,
    )
    stamp.write_text(wanted)
    return python


# --- measurement -----------------------------------------------------------------------


@dataclass
class Series:
    runs: list[Run] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)

    def median(self, key: Callable[[Run], float]) -> float:
        return statistics.median(key(r) for r in self.runs)

    def spread(self, key: Callable[[Run], float]) -> tuple[float, float]:
        values = [key(r) for r in self.runs]
        return min(values), max(values)


def interleaved(
    loads: dict[str, Callable[[], Run]], rounds: int, baseline: str
) -> dict[str, Series]:
    """Each load once unrecorded (a warm-up), then once a round, in an order that
    rotates; ratios to the round's baseline."""
    for load in loads.values():
        load()
    results = {name: Series() for name in loads}
    names = list(loads)
    for n in range(rounds):
        order = names[n % len(names) :] + names[: n % len(names)]
        runs = {}
        for name in order:
            runs[name] = loads[name]()
            results[name].runs.append(runs[name])
            print(f"  round {n + 1}/{rounds} {name}: {runs[name].rps:,.0f} req/s", flush=True)
        for name in names:
            results[name].ratios.append(runs[name].rps / runs[baseline].rps)
    return results


def redis_round_trips(url: str, headers: dict[str, str], prefix: str, requests: int = 200) -> float:
    """Commands sent by clients (not by scripts) on ``prefix``'s keys per request, seen
    by MONITOR while ``requests`` sequential requests run."""
    seen: list[str] = []
    ready = threading.Event()
    stop = threading.Event()

    def watch() -> None:
        client = redis.Redis.from_url(REDIS_URL)
        with client.monitor() as monitor:
            ready.set()
            for command in monitor.listen():
                if stop.is_set():
                    break
                seen.append(str(command.get("client_type", "")) + " " + command["command"])

    time.sleep(2)  # the requests still queued from the last load would be counted too
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    ready.wait(5)
    time.sleep(0.2)
    with httpx.Client(timeout=10) as client:
        for _ in range(requests):
            assert client.get(url, headers=headers).status_code == 200
    time.sleep(0.2)
    stop.set()
    redis.Redis.from_url(REDIS_URL).ping()  # wakes the monitor up to see the stop
    thread.join(5)
    own = [line for line in seen if prefix in line and not line.startswith("lua")]
    return len(own) / requests


@contextmanager
def sampling(url: str, interval: float = 0.1) -> Iterator[list[float]]:
    """Samples of bastion_event_queue_depth from /metrics while the block runs."""
    depths: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        with httpx.Client(timeout=5) as client:
            while not stop.is_set():
                with suppress(httpx.HTTPError):
                    depths.append(
                        metric(client.get(f"{url}/metrics").text, "bastion_event_queue_depth")
                    )
                time.sleep(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield depths
    finally:
        stop.set()
        thread.join(10)


def metric(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name + labels)} ([\d.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


# --- the run ---------------------------------------------------------------------------

SERVER_CPU: str | None = None
LOAD_CPU: str | None = None


def uvicorn(python: Path | str, target: str, *extra: str) -> list[str]:
    return [
        str(python),
        "-m",
        "uvicorn",
        target,
        "--app-dir",
        str(APPS),
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--no-access-log",
        "--no-server-header",
        "--log-level",
        "warning",
        *extra,
    ]


def bastion_env(
    work: Path, database_url: str, redis_prefix: str | None, **extra: str
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    env.update(
        {
            "BASTION_DATABASE_URL": database_url,
            "BASTION_DATA_DIR": str(work / "var"),
            "BASTION_RATE_LIMITS": json.dumps(RATE_LIMITS),
            "BASTION_ACCESS_TOKEN_TTL_SECONDS": "3600",
            "BASTION_LOG_EVENTS_TO_STDOUT": "false",
            "PYTHONPATH": str(APPS),
        }
    )
    if redis_prefix is not None:
        env.update({"BASTION_REDIS_URL": REDIS_URL, "BASTION_REDIS_KEY_PREFIX": redis_prefix})
    env.update(extra)
    return env


def main() -> None:
    global SERVER_CPU, LOAD_CPU
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds of 4 s")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--output", type=Path, default=BENCH / "RESULTS.md")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=GUARD_SCENARIOS + SERVICE_SCENARIOS,
        metavar="SCENARIO",
        help="run these scenarios only (with their group's baseline): "
        + ", ".join(repr(name) for name in GUARD_SCENARIOS + SERVICE_SCENARIOS),
    )
    args = parser.parse_args()
    only = set(args.only or ())

    def wanted(name: str) -> bool:
        return not only or name in only

    rounds = args.rounds or (3 if args.quick else 5)
    seconds = args.seconds or (4.0 if args.quick else 8.0)
    if (os.cpu_count() or 1) >= 2 and shutil.which("taskset"):
        SERVER_CPU, LOAD_CPU = "0", "1"
    ensure_wrk()
    peers_python = ensure_peers() if any(map(wanted, PEER_SCENARIOS)) else None
    run_id = secrets.token_hex(4)
    prefix = f"bench-{run_id}:"
    work = Path(tempfile.mkdtemp(prefix="bastion-bench-"))
    database = f"bench_{run_id}"
    pg_url = create_database(database)
    servers: list[Server] = []
    report = Report(rounds=rounds, seconds=seconds)
    try:
        migrate(pg_url, work)
        if any(map(wanted, GUARD_SCENARIOS)):
            report.sections.append(
                guard_group(work, pg_url, prefix, peers_python, servers, rounds, seconds, wanted)
            )
        if any(map(wanted, SERVICE_SCENARIOS)):
            report.sections.append(
                service_group(work, pg_url, prefix, servers, rounds, seconds, wanted)
            )
    finally:
        for server in servers:
            server.stop()
        drop_database(database)
        delete_keys(prefix)
    args.output.write_text(report.render())
    print(f"wrote {args.output} (server logs in {work})")


def create_database(name: str) -> str:
    async def create() -> None:
        conn = await asyncpg.connect(PG_DSN)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    host = PG_DSN.split("://", 1)[1].rsplit("/", 1)[0]
    return f"postgresql+asyncpg://{host}/{name}"


def drop_database(name: str) -> None:
    async def drop() -> None:
        conn = await asyncpg.connect(PG_DSN)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(drop())


def delete_keys(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)


def migrate(database_url: str, work: Path) -> None:
    env = bastion_env(work, database_url, None)
    subprocess.run(
        [sys.executable, "-c", "from bastion_cli import main; main()", "migrate"],
        env=env,
        check=True,
        capture_output=True,
    )


def start(servers: list[Server], *new: Server) -> None:
    for server in new:
        servers.append(server)
        server.start()
    for server in new:
        server.wait_ready()


def guard_group(
    work: Path,
    pg_url: str,
    prefix: str,
    peers_python: Path | None,
    servers: list[Server],
    rounds: int,
    seconds: float,
    wanted: Callable[[str], bool],
) -> Section:
    print("scenarios 1-4: the guard and the peers on GET /item", flush=True)
    peers_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BASTION_")},
        "BENCH_JWT_SECRET": secrets.token_hex(32),
        "BENCH_DATABASE_URL": f"sqlite+aiosqlite:///{work / 'fastapi-users.db'}",
        "BENCH_REDIS_URL": REDIS_URL,
        "BENCH_REDIS_PREFIX": f"{prefix}slowapi",
    }

    def embedded(name: str, target: str, folder_name: str | None = None) -> Server:
        """A guarded app on the embedded default, with a migrated SQLite file (its own,
        or ``folder_name``'s)."""
        folder = work / (folder_name or name)
        database_url = f"sqlite+aiosqlite:///{folder / 'bastion.db'}"
        if not folder.exists():
            folder.mkdir()
            migrate(database_url, folder)
        return Server(
            name,
            uvicorn(sys.executable, target, "--factory"),
            bastion_env(folder, database_url, None),
            SERVER_CPU,
            work / f"{name}.log",
        )

    def peer(name: str, target: str) -> Server:
        assert peers_python is not None
        return Server(
            name, uvicorn(peers_python, target), peers_env, SERVER_CPU, work / f"{name}.log"
        )

    (work / "shared").mkdir()
    builders: dict[str, Callable[[], Server]] = {
        "bare": lambda: Server(
            "bare",
            uvicorn(sys.executable, "bare:app"),
            dict(os.environ),
            SERVER_CPU,
            work / "bare.log",
        ),
        "guard-memory": lambda: embedded("guard-memory", "guarded:create"),
        "guard-memory-last": lambda: embedded("guard-memory-last", "guarded:create_last"),
        # guard-memory's database and keys: its token is valid here (no login route).
        "guard-install": lambda: embedded("guard-install", "installed:create", "guard-memory"),
        "guard-pg-redis": lambda: Server(
            "guard-pg-redis",
            uvicorn(sys.executable, "guarded:create", "--factory"),
            bastion_env(work / "shared", pg_url, f"{prefix}guard:"),
            SERVER_CPU,
            work / "guard-pg-redis.log",
        ),
        "fastapi-users": lambda: peer("fastapi-users", "fastapi_users_app:app"),
        "slowapi-redis": lambda: peer("slowapi-redis", "slowapi_app:app"),
    }
    measured = [name for name in builders if name == "bare" or wanted(name)]
    # guard-install takes its token from guard-memory, which runs for that even unmeasured.
    needed = {*measured, *(["guard-memory"] if "guard-install" in measured else [])}
    targets = {name: build() for name, build in builders.items() if name in needed}
    installed = targets.pop("guard-install", None)
    start(servers, *targets.values())
    tokens: dict[str, str] = {
        name: bastion_token(targets[name].url, "bench@example.com")
        for name in ("guard-memory", "guard-memory-last", "guard-pg-redis")
        if name in targets
    }
    if "fastapi-users" in targets:
        tokens["fastapi-users"] = fastapi_users_token(targets["fastapi-users"].url)
    if installed is not None:
        # Started once guard-memory has made the keys both read, so neither races to.
        start(servers, installed)
        targets["guard-install"] = installed
        tokens["guard-install"] = tokens["guard-memory"]

    def load(name: str) -> Callable[[], Run]:
        headers = bearer(tokens[name]) if name in tokens else {}
        return lambda: wrk(f"{targets[name].url}/item", seconds=seconds, headers=headers)

    loads = {name: load(name) for name in measured}
    results = interleaved(loads, rounds, "bare")
    notes = []
    if "guard-pg-redis" in results:
        trips = redis_round_trips(
            f"{targets['guard-pg-redis'].url}/item",
            bearer(tokens["guard-pg-redis"]),
            f"{prefix}guard:",
        )
        notes.append(
            "Redis commands sent per guarded request (guard-pg-redis, MONITOR, 200 requests): "
            f"{trips:.2f} (MONITOR sees commands, not round trips: a pipeline of two commands "
            "is one round trip; target: one round trip)"
        )
    for server in targets.values():
        server.stop()
    if "guard-pg-redis" in results and "fastapi-users" in results:
        peer_ratio = ratio_of(results["guard-pg-redis"], results["fastapi-users"])
        notes.append(
            "guard-pg-redis / fastapi-users, median of the rounds: "
            f"{peer_ratio:.1f}x (target: at least 5x)"
        )
    if {"guard-memory", "guard-memory-last", "guard-pg-redis"} & set(results):
        notes.append(
            "guard-memory and guard-pg-redis have GET /item first in the route list, as the "
            "bare app has; guard-memory-last has it after the task service's routes, where "
            "FastAPI's router matches it last (bench/apps/guarded.py)"
        )
    if "guard-install" in results:
        notes.append(
            "guard-install: a plain FastAPI app with `install(app, routers=())` and GET /item "
            "needing READ, on guard-memory's SQLite file (bench/apps/installed.py): the guard "
            "as a library user installs it, without the task service"
        )
    return Section(
        "Scenarios 1-4: GET /item, the guard and the peers",
        results,
        notes=notes,
        targets={"guard-memory": 0.75, "guard-install": 0.75, "guard-pg-redis": 0.50},
    )


def ratio_of(series: Series, baseline: Series) -> float:
    """The median, over the rounds, of ``series``' req/s over ``baseline``'s in that round."""
    return statistics.median(s.rps / b.rps for s, b in zip(series.runs, baseline.runs, strict=True))


def service_group(
    work: Path,
    pg_url: str,
    prefix: str,
    servers: list[Server],
    rounds: int,
    seconds: float,
    wanted: Callable[[str], bool],
) -> Section:
    print("scenarios 5-9: the task service on PostgreSQL and Redis", flush=True)
    (work / "service").mkdir()
    env = bastion_env(work / "service", pg_url, f"{prefix}service:")
    serve = [
        sys.executable,
        "-c",
        "from bastion_cli import main; main()",
        "serve",
        "--port",
        "{port}",
    ]
    bare = Server(
        "bare",
        uvicorn(sys.executable, "bare:app"),
        dict(os.environ),
        SERVER_CPU,
        work / "bare2.log",
    )
    service = Server("service", serve, env, SERVER_CPU, work / "service.log")
    start(servers, bare, service)
    member = bastion_token(service.url, "member@example.com")
    with httpx.Client(base_url=service.url, timeout=30, headers=bearer(member)) as client:
        created = [
            client.post("/tasks", json={"title": f"task {n}", "description": "a task " * 20}).json()
            for n in range(40)
        ]
    ids = [task["id"] for task in created]
    one = f"{service.url}/tasks/{ids[0]}"
    # The unguarded baseline reads the same row of the same database, as its owner.
    unguarded = Server(
        "unguarded",
        uvicorn(sys.executable, "unguarded_tasks:create", "--factory"),
        {
            **{k: v for k, v in os.environ.items() if not k.startswith("BASTION_")},
            "BENCH_DATABASE_URL": pg_url,
            "BENCH_USER_ID": created[0]["owner_id"],
        },
        SERVER_CPU,
        work / "unguarded.log",
    )
    candidates: dict[str, Callable[[], Run]] = {
        "bare": lambda: wrk(f"{bare.url}/item", seconds=seconds),
        TASK_ONE: lambda: wrk(one, seconds=seconds, headers=bearer(member)),
        TASK_UNGUARDED: lambda: wrk(f"{unguarded.url}/tasks/{ids[0]}", seconds=seconds),
        TASK_LIST: lambda: wrk(
            f"{service.url}/tasks?limit=20", seconds=seconds, headers=bearer(member)
        ),
    }
    # The pair runs together: the target is the one's req/s over the other's.
    pair = wanted(TASK_ONE) or wanted(TASK_UNGUARDED)
    loads = {
        name: load
        for name, load in candidates.items()
        if name == "bare" or wanted(name) or (pair and name in (TASK_ONE, TASK_UNGUARDED))
    }
    if pair:
        start(servers, unguarded)
        with httpx.Client(timeout=30) as client:
            guarded = client.get(one, headers=bearer(member))
            plain = client.get(f"{unguarded.url}/tasks/{ids[0]}")
        if guarded.status_code != 200 or plain.json() != guarded.json():
            raise SystemExit(f"the two reads differ:\n{guarded.text}\n{plain.text}")
    results = interleaved(loads, rounds, "bare") if len(loads) > 1 else {}
    unguarded.stop()
    notes: list[str] = []
    if pair:
        notes.append(
            f"{TASK_ONE} / {TASK_UNGUARDED}, median of the rounds: "
            f"{ratio_of(results[TASK_ONE], results[TASK_UNGUARDED]):.2f} (target: at least "
            f"{UNGUARDED_TARGET:.2f}); the unguarded app (bench/apps/unguarded_tasks.py) "
            "runs the service's own read (TaskService.find) on the same database, with the "
            "same engine settings and response model, for a fixed caller"
        )

    login = post_script(work, "/auth/login", {"email": "member@example.com", "password": PASSWORD})
    if wanted("logins"):
        # (6) logins at the default Argon2 profile
        logins = [
            wrk(f"{service.url}/auth/login", seconds=seconds, connections=8, script=login)
            for _ in range(max(2, rounds // 2))
        ]
        results["POST /auth/login (8 clients)"] = Series(logins, [])

    if wanted("login-storm"):
        # (7) reads while 20 clients log in
        quiet, storm = Series(), Series()
        for _ in range(rounds):
            quiet.runs.append(wrk(one, seconds=seconds, connections=8, headers=bearer(member)))
            storming = subprocess.Popen(
                wrk_argv(
                    f"{service.url}/auth/login", seconds=seconds + 2, connections=20, script=login
                ),
                stdout=subprocess.DEVNULL,
            )
            time.sleep(1)
            storm.runs.append(wrk(one, seconds=seconds, connections=8, headers=bearer(member)))
            storming.wait()
        results["GET /tasks/{id}, 8 clients"] = quiet
        results["GET /tasks/{id}, 8 clients, 20 logging in"] = storm
        p99_ratio = statistics.median(
            s.p99_ms / q.p99_ms for s, q in zip(storm.runs, quiet.runs, strict=True)
        )
        notes.append(
            "p99 of reads during the login storm / without it, median of the rounds: "
            f"{p99_ratio:.2f}x (target: at most 2x)"
        )

    if wanted("denials"):
        # (8) a burst of denials
        with sampling(service.url) as depths:
            denied = wrk(
                f"{service.url}/admin/security/events",
                expect=None,
                seconds=seconds,
                headers=bearer(member),
            )
        text = httpx.get(f"{service.url}/metrics").text
        results["denial burst (403)"] = Series([denied], [])
        notes.append(
            f"denial burst: {denied.non_2xx:,} answers 403 in {seconds:g} s; event queue depth "
            f"max {max(depths, default=0):.0f} (sampled every 0.1 s), dropped "
            f"{metric(text, 'bastion_events_dropped_total'):.0f}, write failures "
            f"{metric(text, 'bastion_event_write_failures_total'):.0f}"
        )
    service.stop()
    bare.stop()

    if wanted("workers"):
        # (9) two workers against one, neither pinned
        one_worker = Server("1 worker", serve, env, None, work / "service-1.log")
        two_workers = Server(
            "2 workers", [*serve, "--workers", "2"], env, None, work / "service-2.log"
        )
        start(servers, one_worker, two_workers)
        path = f"/tasks/{ids[0]}"
        loads9 = {
            "1 worker": lambda: wrk(
                f"{one_worker.url}{path}", seconds=seconds, headers=bearer(member)
            ),
            "2 workers": lambda: wrk(
                f"{two_workers.url}{path}", seconds=seconds, headers=bearer(member)
            ),
        }
        workers = interleaved(loads9, rounds, "1 worker")
        results["GET /tasks/{id}, 1 worker (unpinned)"] = workers["1 worker"]
        results["GET /tasks/{id}, 2 workers (unpinned)"] = workers["2 workers"]
        one_worker.stop()
        two_workers.stop()
    return Section(
        "Scenarios 5-9: the task service on PostgreSQL and Redis",
        results,
        notes=notes,
        relative_targets={TASK_ONE: (TASK_UNGUARDED, UNGUARDED_TARGET)} if pair else {},
    )


# --- the report ------------------------------------------------------------------------


@dataclass
class Section:
    title: str
    results: dict[str, Series]
    notes: list[str] = field(default_factory=list)
    targets: dict[str, float] = field(default_factory=dict)
    # A target against another row of the table, not bare: name -> (that row, ratio).
    relative_targets: dict[str, tuple[str, float]] = field(default_factory=dict)

    def render(self) -> str:
        lines = [
            f"## {self.title}",
            "",
            "| scenario | req/s (median) | min-max | / bare (median, min-max) "
            "| p50 ms | p99 ms | target |",
            "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for name, series in self.results.items():
            low, high = series.spread(lambda r: r.rps)
            ratio = "-"
            if series.ratios:
                ratio = (
                    f"{statistics.median(series.ratios):.2f} "
                    f"({min(series.ratios):.2f}-{max(series.ratios):.2f})"
                )
            target = ""
            if name in self.targets:
                wanted = self.targets[name]
                met = statistics.median(series.ratios) >= wanted
                target = f">= {wanted:.2f}: {'met' if met else 'NOT met'}"
            if name in self.relative_targets:
                baseline, wanted = self.relative_targets[name]
                ratio_to = ratio_of(series, self.results[baseline])
                target = (
                    f"/ {baseline}: {ratio_to:.2f}; >= {wanted:.2f}: "
                    f"{'met' if ratio_to >= wanted else 'NOT met'}"
                )
            lines.append(
                f"| {name} | {series.median(lambda r: r.rps):,.0f} | {low:,.0f}-{high:,.0f} | "
                f"{ratio} | {series.median(lambda r: r.p50_ms):.2f} | "
                f"{series.median(lambda r: r.p99_ms):.2f} | {target} |"
            )
        lines.append("")
        lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"


@dataclass
class Report:
    rounds: int
    seconds: float
    sections: list[Section] = field(default_factory=list)

    def render(self) -> str:
        head = [
            "# Benchmark results",
            "",
            f"Written by `bench/run.py` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
            "",
            f"- machine: {cpu_model()}, {os.cpu_count()} CPUs, "
            f"{platform.system()} {platform.release()}",
            f"- Python {platform.python_version()}; {versions()}",
            f"- bastion at {git_revision()}",
            f"- servers: uvicorn, one worker, pinned to CPU {SERVER_CPU}; load: wrk -t1 "
            f"-c{CONNECTIONS} pinned to CPU {LOAD_CPU}, {self.rounds} rounds of "
            f"{self.seconds:g} s, interleaved; medians of the rounds",
            "- the machine is shared: compare ratios within one run, not req/s across runs",
            "",
        ]
        return "\n".join(head) + "\n" + "\n".join(s.render() for s in self.sections)


def cpu_model() -> str:
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def versions() -> str:
    from importlib.metadata import version

    names = ("fastapi", "starlette", "uvicorn", "pydantic", "sqlalchemy", "redis")
    ours = ", ".join(f"{n} {version(n)}" for n in names)
    if not (PEERS / "bin" / "python").exists():
        peers = "not installed"
    else:
        peers = subprocess.run(
            [
                str(PEERS / "bin" / "python"),
                "-c",
                "from importlib.metadata import version as v; "
                "print(f\"fastapi-users {v('fastapi-users')}, slowapi {v('slowapi')}\")",
            ],
            capture_output=True,
            text=True,
        ).stdout.strip()
    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split(
        "\n"
    )[0]
    return f"{ours}; peers: {peers}; {wrk_version.strip()}"


def git_revision() -> str:
    result = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain"], capture_output=True, text=True
    )
    return result.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")


if __name__ == "__main__":
    main()
