"""A revoked access token stays refused when the revocation cache forgets it.

Logout, ending one session, logout everywhere and the family a reused refresh token
revokes are each done once; then the service restarts (a new process on the same
database: the embedded default's in-process cache starts empty), or its Redis loses
every key (``FLUSHDB``, or a restart without persistence, while requests run). The old
access token must still be refused: the database holds every revocation, and the cache
is rebuilt from it before any "not revoked" is believed. ASVS 7.4.1, 7.2.4.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from asgi_lifespan import LifespanManager
from redis.exceptions import ConnectionError as RedisConnectionError

from bastion_tasks import create_app
from bastion_tasks.settings import TaskSettings
from tests.conftest import AppMaker
from tests.helpers import login, signed_up
from tests.redis_server import RedisServer

REVOCATIONS = ["logout", "end-session", "logout-all", "refresh-reuse"]
# Generous limits: the load below must meet the revocation check, not a 429.
LOOSE_LIMITS = dict.fromkeys(
    ("ip", "reads", "writes", "deletes", "login", "login-ip", "register", "refresh"),
    "100000/minute",
)


async def _me(client: httpx.AsyncClient, auth: dict[str, str]) -> int:
    return (await client.get("/users/me", headers=auth)).status_code


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _revoked_token(
    kind: str, client: httpx.AsyncClient, app: Any, email: str
) -> dict[str, str]:
    """Sign up ``email``, revoke a token of it in the way ``kind`` names, and return the
    auth header of that token (refused from now on)."""
    pair = await signed_up(client, email)
    auth = pair["auth"]
    assert await _me(client, auth) == 200
    if kind == "logout":
        assert (await client.post("/auth/logout", headers=auth)).status_code == 204
    elif kind == "end-session":
        other = await login(client, email)  # a second device, ended from the first
        auth = _bearer(other["access_token"])
        sid = app.state.security.access_tokens.verify(other["access_token"]).sid
        ended = await client.delete(f"/auth/sessions/{sid}", headers=_bearer(pair["access_token"]))
        assert ended.status_code == 204, ended.text
    elif kind == "logout-all":
        assert (await client.post("/auth/logout-all", headers=auth)).status_code == 204
    else:
        refresh = {"refresh_token": pair["refresh_token"]}
        rotated = await client.post("/auth/refresh", json=refresh)
        assert rotated.status_code == 200, rotated.text
        auth = _bearer(rotated.json()["access_token"])
        assert (await client.post("/auth/refresh", json=refresh)).status_code == 401
    assert await _me(client, auth) == 401
    return auth


@contextlib.asynccontextmanager
async def _running(settings: TaskSettings) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    """One process of the service: started, and shut down at the end of the block."""
    app = create_app(settings)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield app, c


@pytest.mark.parametrize("kind", REVOCATIONS)
async def test_a_revoked_token_stays_refused_after_a_restart(
    settings: TaskSettings, kind: str
) -> None:
    async with _running(settings) as (app, client):
        auth = await _revoked_token(kind, client, app, "alice@example.com")

    async with _running(settings) as (_, client):
        status = await _me(client, auth)

    assert status == 401


@pytest.mark.parametrize("limits", ["read-along", "own-read"])
@pytest.mark.parametrize("kind", REVOCATIONS)
async def test_a_revoked_token_stays_refused_after_redis_is_emptied(
    make: AppMaker, private_redis: RedisServer, kind: str, limits: str
) -> None:
    """With rate limits on, the limiter's script reads the revocation keys along; off,
    the revocation store reads them itself: both must notice the lost data."""
    app = await make.app(
        redis_url=private_redis.url,
        rate_limit_enabled=limits == "read-along",
        rate_limits=LOOSE_LIMITS,
    )
    client = await make.client(app)
    auth = await _revoked_token(kind, client, app, "alice@example.com")
    flusher = aioredis.Redis.from_url(private_redis.url)
    await flusher.flushdb()
    await flusher.aclose()

    status = await _me(client, auth)

    assert status == 401


async def test_no_revoked_token_is_believed_while_redis_restarts_empty_under_load(
    make: AppMaker, private_redis: RedisServer
) -> None:
    app = await make.app(
        redis_url=private_redis.url, rate_limit_enabled=True, rate_limits=LOOSE_LIMITS
    )
    client = await make.client(app)
    revoked = {
        kind: await _revoked_token(kind, client, app, f"{kind}@example.com") for kind in REVOCATIONS
    }
    live = (await signed_up(client, "live@example.com"))["auth"]
    answers: dict[str, list[int]] = {kind: [] for kind in [*REVOCATIONS, "live"]}
    stop = asyncio.Event()

    async def load(kind: str, auth: dict[str, str]) -> None:
        while not stop.is_set():
            answers[kind].append(await _me(client, auth))
            await asyncio.sleep(0.01)

    workers = [asyncio.create_task(load(kind, auth)) for kind, auth in revoked.items()]
    workers.append(asyncio.create_task(load("live", live)))
    await asyncio.sleep(0.3)
    before = len(answers["live"])
    await private_redis.restart_empty()
    for _ in range(100):  # until the live token is believed again (bounded: 10 s)
        await asyncio.sleep(0.1)
        if answers["live"][before:].count(200) >= 5:
            break
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.gather(*workers)

    for kind in REVOCATIONS:
        assert answers[kind], kind
        assert 200 not in answers[kind], (kind, answers[kind])
        assert set(answers[kind]) <= {401, 503}, (kind, set(answers[kind]))
    assert answers["live"][-1] == 200  # the service recovered without a restart


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_a_denial_redis_did_not_take_is_not_forgotten(
    make: AppMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis fails between the database's commit and the cache's write: the logout is
    refused (503), and neither this instance nor another believes the token after."""
    app = await make.app()
    other_instance = await make.app()  # the same Redis and prefix, started before
    client, other = await make.client(app), await make.client(other_instance)
    pair = await signed_up(client, "alice@example.com")
    assert await _me(other, pair["auth"]) == 200

    async def lost(*args: object, **kwargs: object) -> None:
        raise RedisConnectionError("connection lost")

    monkeypatch.setattr(app.state.security.stores.revocation.client, "set", lost)
    ended = await client.post("/auth/logout", headers=pair["auth"])
    monkeypatch.undo()

    assert ended.status_code == 503
    assert await _me(client, pair["auth"]) == 401
    assert await _me(other, pair["auth"]) == 401
