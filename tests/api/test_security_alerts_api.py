"""GET /admin/security/alerts, replayed from real traffic: twelve wrong logins from one IP
through the API are one alert, stored, logged as one ``alert_raised`` event, counted in
the metrics. Both backends (SQLite, PostgreSQL) through ``backend``."""

from __future__ import annotations

from typing import Any

import httpx

from bastion.stores import EventQuery
from tests.conftest import AppMaker
from tests.helpers import add_user, user
from tests.smtp import SMTPTestServer, mail_settings

PATH = "/admin/security/alerts"
ATTACKER = "198.51.100.66"


async def attacked(
    make: AppMaker, **settings: Any
) -> tuple[Any, httpx.AsyncClient, dict[str, Any]]:
    """An app after twelve wrong logins from ATTACKER, and an admin's client and tokens."""
    app = await make.app(**settings)
    await add_user(app, "victim@example.com")
    attacker = await make.client(app, ip=ATTACKER)
    for _ in range(12):
        response = await attacker.post(
            "/auth/login", json={"email": "victim@example.com", "password": "wrong guess 1234"}
        )
        assert response.status_code == 401
    admin_client = await make.client(app, ip="203.0.113.7")
    admin = await user(admin_client, app, "admin@example.com", "admin")
    await app.state.security.drain()
    return app, admin_client, admin


async def test_twelve_wrong_logins_from_one_ip_are_one_alert(make: AppMaker) -> None:
    _app, client, admin = await attacked(make)

    response = await client.get(PATH, headers=admin["auth"])

    assert response.status_code == 200
    [alert] = response.json()
    assert (alert["rule"], alert["key"], alert["count"]) == ("auth_failures_from_ip", ATTACKER, 10)
    assert (alert["severity"], alert["window_seconds"]) == ("high", 300)
    assert set(alert) == {
        "id",
        "rule",
        "key",
        "count",
        "window_seconds",
        "first_event_at",
        "last_event_at",
        "severity",
        "created_at",
    }


async def test_the_alert_is_logged_as_one_alert_raised_event(make: AppMaker) -> None:
    app, _client, _admin = await attacked(make)

    raised = await app.state.security.stores.events.query(EventQuery(event_type="alert_raised"))

    assert len(raised) == 1
    assert raised[0].severity == "high"
    assert raised[0].extra["rule"] == "auth_failures_from_ip"
    assert raised[0].extra["alert_key"] == ATTACKER


async def test_the_alert_is_counted_in_the_metrics(make: AppMaker) -> None:
    _app, client, _admin = await attacked(make)

    response = await client.get("/metrics")

    assert response.status_code == 200
    assert 'bastion_alerts_total{rule="auth_failures_from_ip"} 1.0' in response.text


async def test_alerts_are_newest_first_and_limited(make: AppMaker) -> None:
    app, client, admin = await attacked(make)
    for n in (1, 2):
        other = await make.client(app, ip=f"192.0.2.{n}")
        for _ in range(10):
            await other.post("/auth/login", json={"email": "x@example.com", "password": "y" * 15})
    await app.state.security.drain()

    response = await client.get(PATH, params={"limit": 2}, headers=admin["auth"])

    assert response.status_code == 200
    assert [a["key"] for a in response.json()] == ["192.0.2.2", "192.0.2.1"]


async def test_reading_the_alerts_is_itself_recorded(make: AppMaker) -> None:
    app, client, admin = await attacked(make)

    await client.get(PATH, headers=admin["auth"])
    await app.state.security.drain()

    reads = await app.state.security.stores.events.query(
        EventQuery(event_type="security_events_read")
    )
    assert [e.user_id for e in reads] == [admin["id"]]
    assert reads[0].extra["filters"] == {"alerts": True, "limit": 50}


async def test_a_limit_out_of_range_is_a_validation_problem(make: AppMaker) -> None:
    _app, client, admin = await attacked(make)

    responses = [
        await client.get(PATH, params={"limit": limit}, headers=admin["auth"])
        for limit in (0, 101, "ten")
    ]

    assert [r.status_code for r in responses] == [422, 422, 422]
    assert {r.headers["content-type"] for r in responses} == {"application/problem+json"}


async def test_a_member_may_not_read_the_alerts(make: AppMaker) -> None:
    app, client, _admin = await attacked(make)
    member = await user(client, app, "member@example.com", "member")

    response = await client.get(PATH, headers=member["auth"])

    assert response.status_code == 403
    assert ATTACKER not in response.text


async def test_the_alert_is_emailed_once_to_each_address(
    make: AppMaker, smtp: SMTPTestServer
) -> None:
    recipients = ["security@example.com", "oncall@example.org"]
    settings = mail_settings(smtp, alert_email_to=",".join(recipients))
    settings["public_url"] = "https://tasks.example"

    app, _client, _admin = await attacked(make, **settings)
    await app.state.security.drain()
    alerts = [m for m in smtp.messages if "alert" in m["Subject"]]

    assert sorted(m["To"] for m in alerts) == sorted(recipients)
    for message in alerts:
        assert message["Subject"] == "[Bastion] high alert: auth_failures_from_ip"
        body = message.get_content()
        assert f"For:       {ATTACKER}" in body
        assert "Events:    10 within 300 s" in body
        assert "https://tasks.example/admin/security/alerts" in body
        assert "wrong guess 1234" not in body  # the attacker's passwords are not in it
