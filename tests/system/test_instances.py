"""Several real service processes, one Redis and one PostgreSQL: one set of limits.

Each instance is a separate ``bastion serve`` process on its own port (as behind a load
balancer), all sharing one database, one Redis key prefix and one signing-key file (made
before any of them starts, as ``bastion keys rotate`` does). The tests show that a rate
limit and the login defence's failure count are global: with per-process state, N
instances would allow N times the quota and never ask for the challenge, since no single
instance would see enough failures.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from bastion.tokens import ensure_key_file
from tests.conftest import REDIS_URL, STRONG_PASSWORD, _truncate
from tests.helpers import solve
from tests.system.service import (
    START_TIMEOUT,
    Instance,
    delete_keys,
    ready,
    service_environment,
    spawn,
    stop,
    tail,
)

INSTANCE_COUNTS = [2, 4]
WRITES_QUOTA = 6
CHALLENGE_AFTER = 4
RATE_LIMITS = {
    "writes": f"{WRITES_QUOTA}/minute",
    # High, so only the limit under test (or the failure counting) can refuse.
    "ip": "1000/minute",
    "reads": "1000/minute",
    "register": "1000/minute",
    "login": "1000/minute",
    "login-ip": "1000/minute",
}
# The refusal that blocks the user (rate-limit escalation): the last one of the test.
BLOCK_AFTER = 2 * WRITES_QUOTA


@dataclass
class Cluster:
    env: dict[str, str]
    workdir: Path
    instances: list[Instance] = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        return [instance.url for instance in self.instances]


def _environment(pg_database: str, key_prefix: str, keys_file: Path) -> dict[str, str]:
    env = service_environment()
    env.update(
        {
            "BASTION_DATABASE_URL": pg_database,
            "BASTION_REDIS_URL": REDIS_URL,
            "BASTION_REDIS_KEY_PREFIX": key_prefix,
            "BASTION_DATA_DIR": str(keys_file.parent),
            "BASTION_SIGNING_KEYS_FILE": str(keys_file),
            "BASTION_PASSWORD_PROFILE": "test-only-insecure",
            "BASTION_LOG_EVENTS_TO_STDOUT": "false",
            "BASTION_RATE_LIMITS": json.dumps(RATE_LIMITS),
            "BASTION_RATE_LIMIT_BLOCK_AFTER": str(BLOCK_AFTER),
            "BASTION_LOGIN_DELAY_AFTER": "50",
            "BASTION_LOGIN_CHALLENGE_AFTER": str(CHALLENGE_AFTER),
            "BASTION_LOGIN_CHALLENGE_DIFFICULTY": "1000",
            # The argon2 pool: one thread per instance is plenty and spares CI's 2 cores.
            "BASTION_HASH_MAX_CONCURRENCY": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


async def _spawn(cluster: Cluster, index: int, attempt: int) -> Instance:
    return await spawn(cluster.env, cluster.workdir, f"instance-{index}-{attempt}")


async def _start(cluster: Cluster, index: int, client: httpx.AsyncClient) -> Instance:
    """Start instance ``index``; a new port when the free one was taken in between."""
    deadline = asyncio.get_running_loop().time() + START_TIMEOUT
    for attempt in range(3):
        instance = await _spawn(cluster, index, attempt)
        cluster.instances.append(instance)
        if await ready(client, instance, deadline):
            return instance
        if "address already in use" not in tail(instance.log).lower():
            break
    pytest.fail(f"instance {index} exited {instance.process.returncode}:\n{tail(instance.log)}")


@pytest.fixture(scope="module")
async def cluster(
    pg_database: str, redis_prefix: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Cluster]:
    """Service processes sharing this run's PostgreSQL database, a Redis key prefix and
    the signing keys; stopped (and their Redis keys deleted) after the module's tests.

    Started once for the module: a test over N instances uses the first N of them.
    """
    workdir = tmp_path_factory.mktemp("cluster")
    key_prefix = f"{redis_prefix}{secrets.token_hex(4)}:"
    keys_file = workdir / "var" / "signing-keys.json"
    cluster = Cluster(_environment(pg_database, key_prefix, keys_file), workdir)
    await _truncate(pg_database)
    try:
        # The keys exist before any instance starts, as ``bastion keys rotate`` makes
        # them: every instance signs and verifies with the same keys and derives the same
        # login-defence secret (its account keys and challenges).
        keys_file.parent.mkdir()
        ensure_key_file(keys_file, "EdDSA")
        async with httpx.AsyncClient(timeout=1.0) as client:
            # Every start ends (ready, failed or timed out) before the first failure is
            # raised: none is still spawning a process while the others are stopped.
            starts = await asyncio.gather(
                *(_start(cluster, i, client) for i in range(max(INSTANCE_COUNTS))),
                return_exceptions=True,
            )
        for outcome in starts:
            if isinstance(outcome, BaseException):
                raise outcome
        # Only the instances that answered (a retry replaced any that lost its port).
        cluster.instances = [i for i in cluster.instances if i.process.returncode is None]
        assert len(cluster.instances) == max(INSTANCE_COUNTS)
        yield cluster
    finally:
        await asyncio.gather(*(stop(instance) for instance in cluster.instances))
        await delete_keys(key_prefix)


async def _round_robin(
    urls: list[str], total: int, send: Callable[[str], Awaitable[httpx.Response]]
) -> list[tuple[str, httpx.Response]]:
    """``total`` requests spread over ``urls`` in turn, one concurrent request per
    instance at a time."""
    answers: list[tuple[str, httpx.Response]] = []
    for start in range(0, total, len(urls)):
        batch = [urls[i % len(urls)] for i in range(start, min(start + len(urls), total))]
        responses = await asyncio.gather(*(send(url) for url in batch))
        answers += zip(batch, responses, strict=True)
    return answers


def _email(what: str) -> str:
    return f"{what}-{secrets.token_hex(4)}@example.com"


@pytest.mark.parametrize("instances", INSTANCE_COUNTS)
async def test_instances_share_one_rate_limit(cluster: Cluster, instances: int) -> None:
    urls = cluster.urls[:instances]
    email = _email("rate")
    async with httpx.AsyncClient(timeout=10.0) as client:
        # Signed up on one instance, signed in on another, the token used on all of them.
        registered = await client.post(
            f"{urls[0]}/auth/register", json={"email": email, "password": STRONG_PASSWORD}
        )
        assert registered.status_code == 202, registered.text
        login = await client.post(
            f"{urls[-1]}/auth/login", json={"email": email, "password": STRONG_PASSWORD}
        )
        assert login.status_code == 200, login.text
        auth = {"Authorization": f"Bearer {login.json()['access_token']}"}

        async def create(url: str) -> httpx.Response:
            return await client.post(f"{url}/tasks", json={"title": "a task"}, headers=auth)

        answers = await _round_robin(urls, 3 * WRITES_QUOTA, create)

        statuses = [response.status_code for _, response in answers]
        assert sorted(set(statuses)) == [201, 429], statuses
        # Per-process limits would let each instance allow the whole quota.
        assert statuses.count(201) == WRITES_QUOTA, statuses
        assert statuses.count(429) == 2 * WRITES_QUOTA, statuses
        assert {url for url, _ in answers} == set(urls)
        refusals = [response for _, response in answers if response.status_code == 429]
        for response in refusals:
            assert int(response.headers["Retry-After"]) >= 1
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.json()["violated-policies"] == ["writes"]

        # The last refusal blocked the user (BASTION_RATE_LIMIT_BLOCK_AFTER) on every
        # instance, for every route class: reads too, though their quota is untouched.
        for url in urls:
            blocked = await client.get(f"{url}/tasks", headers=auth)
            assert blocked.status_code == 429, blocked.text
            assert int(blocked.headers["Retry-After"]) >= 1


@pytest.mark.parametrize("instances", INSTANCE_COUNTS)
async def test_instances_share_one_lockout_state(cluster: Cluster, instances: int) -> None:
    urls = cluster.urls[:instances]
    email = _email("lockout")
    async with httpx.AsyncClient(timeout=10.0) as client:

        async def login(url: str, password: str, **extra: Any) -> httpx.Response:
            body = {"email": email, "password": password, **extra}
            return await client.post(f"{url}/auth/login", json=body)

        registered = await client.post(
            f"{urls[0]}/auth/register", json={"email": email, "password": STRONG_PASSWORD}
        )
        assert registered.status_code == 202, registered.text

        # Spread over the instances, no instance sees BASTION_LOGIN_CHALLENGE_AFTER failures.
        for attempt in range(CHALLENGE_AFTER):
            failed = await login(urls[attempt % len(urls)], "wrong horse battery staple 42")
            assert failed.status_code == 401, failed.text
            assert "challenge" not in failed.json()
            assert "Retry-After" not in failed.headers

        # Counted together: the right password without a solved challenge is refused.
        right = await login(urls[CHALLENGE_AFTER % len(urls)], STRONG_PASSWORD)
        assert right.status_code == 401, right.text
        challenge = right.json()["challenge"]
        assert set(challenge) >= {"algorithm", "challenge", "maxnumber", "salt", "signature"}

        # A challenge issued by one instance is accepted by another (one shared secret).
        solved = await login(
            urls[(CHALLENGE_AFTER + 1) % len(urls)], STRONG_PASSWORD, altcha=solve(challenge)
        )
        assert solved.status_code == 200, solved.text
        assert solved.json()["access_token"]
