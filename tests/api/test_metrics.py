"""``GET /metrics`` through the real app: the Prometheus text, counters that move by
exactly what was done, the scrape token, closed label sets, one registry per app.

Counters are read from the app's own registry where an exact delta matters (a scrape is
a request too, and counts itself).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import httpx
import prometheus_client
import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from bastion.alerts import DEFAULT_RULES
from bastion.config import DEFAULT_POLICIES
from bastion.metrics import DECISIONS, LOGIN_OUTCOMES, STATUS_CLASSES
from bastion.testing import capture_events
from tests.conftest import AppMaker
from tests.helpers import STRONG_PASSWORD, add_user, user

# The metrics do not depend on the store backend: one backend is enough.
pytestmark = pytest.mark.parametrize("backend", ["sqlite"])

TOKEN = "a-long-random-scrape-token-for-the-tests"
FAMILIES = {
    "bastion_requests",
    "bastion_security_events",
    "bastion_rate_limit_refusals",
    "bastion_logins",
    "bastion_password_hash_queue_depth",
    "bastion_password_hash_wait_seconds",
    "bastion_event_queue_depth",
    "bastion_events_dropped",
    "bastion_event_write_failures",
}
# What each label may hold: closed sets only.
CLOSED = {
    "decision": set(DECISIONS),
    "status": set(STATUS_CLASSES),
    "outcome": set(LOGIN_OUTCOMES),
    "policy": {*DEFAULT_POLICIES, "blocked", "other"},
    "severity": {"info", "low", "medium", "high", "critical"},
    "rule": {*(rule.name for rule in DEFAULT_RULES), "other"},
}
EVENT_TYPE = re.compile(r"[a-z][a-z0-9_]*")


def value(app: Any, name: str, **labels: str) -> float:
    """A sample of the app's own registry (0 if it has not appeared yet)."""
    return app.state.metrics.registry.get_sample_value(name, labels) or 0.0


def samples(text: str) -> list[Sample]:
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def requests(app: Any, decision: str, status: str) -> float:
    return value(app, "bastion_requests_total", decision=decision, status=status)


def logins(app: Any) -> dict[str, float]:
    return {o: value(app, "bastion_logins_total", outcome=o) for o in LOGIN_OUTCOMES}


async def test_the_exposition_is_prometheus_text_with_every_metric(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    names = {family.name for family in text_string_to_metric_families(response.text)}
    assert names >= FAMILIES


@pytest.mark.parametrize(
    ("path", "decision", "status"),
    [
        pytest.param("/healthz", "allow", "2xx", id="allowed"),
        pytest.param("/tasks", "deny", "4xx", id="denied-without-token"),
        pytest.param("/no-such-route", "none", "4xx", id="no-route-decided"),
    ],
)
async def test_a_request_counts_once_by_decision_and_status_class(
    client: httpx.AsyncClient, app: Any, path: str, decision: str, status: str
) -> None:
    before = requests(app, decision, status)

    await client.get(path)

    assert requests(app, decision, status) - before == 1


async def test_an_unhandled_error_counts_as_a_5xx(make: AppMaker) -> None:
    app = await make.app()

    @app.get("/boom", dependencies=[app.state.guard.public("fails on purpose")])
    async def boom() -> None:
        raise RuntimeError("failed on purpose")

    client = await make.client(app)

    response = await client.get("/boom")

    assert response.status_code == 500
    assert requests(app, "allow", "5xx") == 1


async def test_scraped_counters_move_by_the_requests_made_between_scrapes(
    client: httpx.AsyncClient,
) -> None:
    def denied(text: str) -> float:
        [found] = [
            s.value
            for s in samples(text)
            if s.name == "bastion_requests_total"
            and s.labels == {"decision": "deny", "status": "4xx"}
        ]
        return found

    first = (await client.get("/metrics")).text
    for _ in range(3):
        assert (await client.get("/tasks")).status_code == 401
    second = (await client.get("/metrics")).text

    assert denied(second) - denied(first) == 3


async def test_login_attempts_are_counted_by_outcome(client: httpx.AsyncClient, app: Any) -> None:
    await add_user(app, "alice@example.com")
    await add_user(app, "locked@example.com", locked_at=datetime.now(UTC))
    before = logins(app)

    ok = await client.post(
        "/auth/login", json={"email": "alice@example.com", "password": STRONG_PASSWORD}
    )
    wrong = await client.post(
        "/auth/login", json={"email": "alice@example.com", "password": "not the password 1"}
    )
    unknown = await client.post(
        "/auth/token", data={"username": "nobody@example.com", "password": STRONG_PASSWORD}
    )
    locked = await client.post(
        "/auth/login", json={"email": "locked@example.com", "password": STRONG_PASSWORD}
    )

    assert [r.status_code for r in (ok, wrong, unknown, locked)] == [200, 401, 401, 401]
    moved = {o: n - before[o] for o, n in logins(app).items()}
    assert moved == {**dict.fromkeys(LOGIN_OUTCOMES, 0), "success": 1, "failure": 2, "locked": 1}


async def test_security_events_are_counted_by_type_and_severity(
    client: httpx.AsyncClient, app: Any
) -> None:
    viewer = await user(client, app, "viewer@example.com", "viewer")
    labels = {"event_type": "permission_denied", "severity": "medium"}
    before = value(app, "bastion_security_events_total", **labels)

    refused = await client.post("/tasks", json={"title": "t"}, headers=viewer["auth"])
    await app.state.security.drain()

    assert refused.status_code == 403
    assert value(app, "bastion_security_events_total", **labels) - before == 1


async def test_each_password_check_is_timed_in_the_hash_pool(
    client: httpx.AsyncClient, app: Any
) -> None:
    await add_user(app, "alice@example.com")
    before = value(app, "bastion_password_hash_wait_seconds_count")

    await client.post("/auth/login", json={"email": "alice@example.com", "password": "wrong 1"})

    assert value(app, "bastion_password_hash_wait_seconds_count") - before == 1
    assert value(app, "bastion_password_hash_queue_depth") == 0


async def test_a_rate_limit_refusal_is_counted_under_its_policy(make: AppMaker) -> None:
    app = await make.app(rate_limit_enabled=True, rate_limits={"reads": "1/minute"})
    client = await make.client(app)

    passed = await client.get("/healthz")
    refused = await client.get("/healthz")
    await app.state.security.drain()

    assert (passed.status_code, refused.status_code) == (200, 429)
    assert value(app, "bastion_rate_limit_refusals_total", policy="reads") == 1
    assert value(app, "bastion_rate_limit_refusals_total", policy="blocked") == 0
    assert requests(app, "none", "4xx") == 1  # refused before any route decided


async def test_a_repeat_offenders_blocked_request_is_counted_as_blocked(make: AppMaker) -> None:
    app = await make.app(
        rate_limit_enabled=True,
        rate_limits={"reads": "1/minute"},
        rate_limit_block_after=1,
        rate_limit_block_seconds=120,
    )
    client = await make.client(app)

    statuses = [(await client.get("/healthz")).status_code for _ in range(3)]
    await app.state.security.drain()

    assert statuses == [200, 429, 429]
    assert value(app, "bastion_rate_limit_refusals_total", policy="reads") == 1
    assert value(app, "bastion_rate_limit_refusals_total", policy="blocked") == 1


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(None, id="no-header"),
        pytest.param("Bearer wrong-token", id="wrong-token"),
        pytest.param(f"Bearer {TOKEN[:-1]}", id="token-prefix"),
        pytest.param(f"Bearer {TOKEN}x", id="token-plus-one"),
        pytest.param(f"Basic {TOKEN}", id="other-scheme"),
        pytest.param("Bearer ", id="empty-token"),
        pytest.param(TOKEN, id="no-scheme"),
    ],
)
async def test_a_scrape_without_the_token_is_refused(
    make: AppMaker, authorization: str | None
) -> None:
    app = await make.app(metrics_token=TOKEN)
    client = await make.client(app)
    headers = {"Authorization": authorization} if authorization else {}

    response = await client.get("/metrics", headers=headers)

    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "/problems/invalid-token"
    assert response.headers["www-authenticate"].startswith('Bearer realm="bastion-metrics"')
    assert "bastion_" not in response.text


async def test_a_users_access_token_does_not_open_the_metrics(make: AppMaker) -> None:
    app = await make.app(metrics_token=TOKEN)
    client = await make.client(app)
    admin = await user(client, app, "admin@example.com", "admin")

    response = await client.get("/metrics", headers=admin["auth"])

    assert response.status_code == 401


@pytest.mark.parametrize("scheme", ["Bearer", "bearer"], ids=["Bearer", "lower-case"])
async def test_a_scrape_with_the_token_is_served(make: AppMaker, scheme: str) -> None:
    app = await make.app(metrics_token=TOKEN)
    client = await make.client(app)

    response = await client.get("/metrics", headers={"Authorization": f"{scheme} {TOKEN}"})

    assert response.status_code == 200
    assert {f.name for f in text_string_to_metric_families(response.text)} >= FAMILIES


async def test_a_refused_scrape_is_logged_and_counted_as_denied_not_as_a_login(
    make: AppMaker,
) -> None:
    app = await make.app(metrics_token=TOKEN)
    client = await make.client(app)
    before = logins(app)

    with capture_events() as events:
        await client.get("/metrics", headers={"Authorization": "Bearer guessed"})
        await app.state.security.drain()

    [failure] = [e for e in events if e.event_type == "auth_failure"]
    assert failure.endpoint == "/metrics"
    assert "guessed" not in str(failure)
    assert requests(app, "deny", "4xx") == 1
    assert logins(app) == before


async def test_an_empty_token_setting_is_no_token(make: AppMaker) -> None:
    app = await make.app(metrics_token="")
    client = await make.client(app)

    response = await client.get("/metrics")

    assert response.status_code == 200  # development: public, as with no token


async def test_metrics_turned_off_are_not_served(make: AppMaker) -> None:
    app = await make.app(metrics_enabled=False)
    client = await make.client(app)

    response = await client.get("/metrics")

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert getattr(app.state, "metrics", None) is None


async def test_no_label_carries_a_user_id_an_address_or_a_path(
    client: httpx.AsyncClient, app: Any
) -> None:
    alice = await user(client, app, "alice@example.com")
    created = await client.post("/tasks", json={"title": "t"}, headers=alice["auth"])
    task_id = created.json()["id"]
    await client.get(f"/tasks/{task_id}", headers=alice["auth"])
    await client.get(f"/tasks/{uuid4()}", headers=alice["auth"])
    await client.get(
        "/no/such/%3Cscript%3E",
        headers={"X-Forwarded-For": "198.51.100.9", "X-Request-ID": "trace-me-0123456789"},
    )
    await client.post("/auth/login", json={"email": "mallory@example.com", "password": "x" * 15})
    await app.state.security.drain()

    text = (await client.get("/metrics")).text

    for leak in (alice["id"], task_id, "203.0.113.7", "198.51.100.9", "trace-me", "mallory"):
        assert leak not in text
    for sample in samples(text):
        for name, label in sample.labels.items():
            if name == "le":
                continue
            if name == "event_type":
                assert EVENT_TYPE.fullmatch(label), label
            else:
                assert label in CLOSED[name], (name, label)


async def test_two_apps_in_one_process_count_apart(make: AppMaker) -> None:
    first = await make.app()
    second = await make.app()
    client = await make.client(first)

    await client.get("/healthz")

    assert first.state.metrics.registry is not second.state.metrics.registry
    assert requests(first, "allow", "2xx") == 1
    assert requests(second, "allow", "2xx") == 0
    assert b"bastion_" not in prometheus_client.generate_latest()  # the global registry
