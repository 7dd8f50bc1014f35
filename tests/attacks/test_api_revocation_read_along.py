"""With rate limits on, the revocation state is read in the limiter's round trip (on
Redis, by the same script) and revoked tokens are still refused.

A logged-out token, a token of a logged-out-everywhere account and a token of a
disabled account are each tried once more and refused, on both backends; on Redis, a
guarded request costs one command (the limiter's script), seen by MONITOR. ASVS 7.4.1,
7.2.4; bench/RESULTS.md (one Redis round trip per guarded request).
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from tests.conftest import REDIS_URL, AppMaker
from tests.helpers import signed_up, user


async def _limited(make: AppMaker) -> tuple[Any, httpx.AsyncClient]:
    app = await make.app(rate_limit_enabled=True)
    return app, await make.client(app)


@pytest.mark.parametrize("logout", ["/auth/logout", "/auth/logout-all"])
async def test_a_logged_out_token_is_refused(make: AppMaker, logout: str) -> None:
    _, client = await _limited(make)
    alice = await signed_up(client, "alice@example.com")
    assert (await client.get("/users/me", headers=alice["auth"])).status_code == 200

    ended = await client.post(logout, headers=alice["auth"])
    assert ended.status_code == 204

    again = await client.get("/users/me", headers=alice["auth"])
    assert again.status_code == 401
    assert "ratelimit" in again.headers  # the limiter did run for this request


async def test_a_token_of_a_disabled_account_is_refused(make: AppMaker) -> None:
    app, client = await _limited(make)
    bob = await user(client, app, "bob@example.com")
    admin = await user(client, app, "admin@example.com", role="admin")
    assert (await client.get("/users/me", headers=bob["auth"])).status_code == 200

    disabled = await client.patch(
        f"/admin/users/{bob['id']}", headers=admin["auth"], json={"is_active": False}
    )
    assert disabled.status_code == 200, disabled.text

    assert (await client.get("/users/me", headers=bob["auth"])).status_code == 401


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_a_guarded_request_is_one_redis_command(make: AppMaker) -> None:
    app, client = await _limited(make)
    prefix = app.state.security.settings.redis_key_prefix
    alice = await signed_up(client, "alice@example.com")
    # The first request caches the account's state; what follows is the steady state.
    assert (await client.get("/users/me", headers=alice["auth"])).status_code == 200

    seen: list[str] = []
    marker = f"end-{secrets.token_hex(4)}"
    watcher = aioredis.Redis.from_url(REDIS_URL)
    async with watcher.monitor() as monitor:

        async def watch() -> None:
            async for command in monitor.listen():
                seen.append(f"{command.get('client_type', '')} {command['command']}")
                if marker in command["command"]:
                    return

        task = asyncio.create_task(watch())
        await asyncio.sleep(0.1)
        for _ in range(5):
            assert (await client.get("/users/me", headers=alice["auth"])).status_code == 200
        pinger = aioredis.Redis.from_url(REDIS_URL)
        await pinger.echo(marker)
        await pinger.aclose()
        await asyncio.wait_for(task, 10)
    await watcher.aclose()

    own = [line for line in seen if prefix in line and not line.startswith("lua")]
    assert len(own) == 5, own
    assert all("EVALSHA" in line.upper() for line in own), own
