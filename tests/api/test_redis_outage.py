"""Redis stops mid-run and comes back: a real redis-server of this test's own.

By default the credential routes fail closed (503 problem, event), other routes fall
back to the in-process limiter and raise an alert event, authenticated routes fail
closed (no revocation state, no token believed), and everything recovers without a
restart when Redis answers again.
"""

from __future__ import annotations

import asyncio

import pytest

from bastion.testing import capture_events
from tests.conftest import AppMaker
from tests.helpers import add_user
from tests.redis_server import RedisServer

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


def _outage_events(events: list) -> list[str]:  # type: ignore[type-arg]
    kinds = ("rate_limit_store_down", "rate_limit_store_recovered", "rate_limit_unavailable")
    return [e.event_type for e in events if e.event_type in kinds]


async def test_redis_down_then_back(make: AppMaker, private_redis: RedisServer) -> None:
    app = await make.app(
        redis_url=private_redis.url,
        rate_limit_enabled=True,
        login_defence_enabled=True,
    )
    client = await make.client(app)
    await add_user(app, "alice@example.com")
    credentials = {"email": "alice@example.com", "password": "correct horse battery staple 42"}
    token = (await client.post("/auth/login", json=credentials)).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/tasks", headers=auth)).status_code == 200

    private_redis.stop()
    with capture_events() as events:
        health = await client.get("/healthz")
        login = await client.post("/auth/login", json=credentials)
        tasks = await client.get("/tasks", headers=auth)
        ready = await client.get("/readyz")
        await app.state.security.events.drain()

    assert health.status_code == 200  # limited in process meanwhile
    assert "RateLimit" in health.headers
    assert login.status_code == 503
    assert login.headers["content-type"] == "application/problem+json"
    assert login.json()["type"] == "/problems/service-unavailable"
    assert int(login.headers["Retry-After"]) >= 1
    assert tasks.status_code == 503  # no revocation state: no token is believed
    assert ready.status_code == 503
    assert _outage_events(events) == ["rate_limit_store_down", "rate_limit_unavailable"]

    await private_redis.start()
    await asyncio.sleep(1.1)  # the limiter tries the store again after a second
    with capture_events() as events:
        health = await client.get("/healthz")
        login = await client.post("/auth/login", json=credentials)
        await app.state.security.events.drain()

    assert health.status_code == 200
    assert login.status_code == 200
    assert (await client.get("/tasks", headers=auth)).status_code == 200
    assert _outage_events(events) == ["rate_limit_store_recovered"]


async def test_fail_closed_refuses_every_route_while_redis_is_down(
    make: AppMaker, private_redis: RedisServer
) -> None:
    app = await make.app(
        redis_url=private_redis.url,
        rate_limit_enabled=True,
        rate_limit_on_store_failure="fail-closed",
    )
    client = await make.client(app)
    assert (await client.get("/healthz")).status_code == 200

    private_redis.stop()
    refused = await client.get("/healthz")

    assert refused.status_code == 503
    assert refused.json()["type"] == "/problems/service-unavailable"
