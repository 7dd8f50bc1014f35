"""Step-up (RFC 9470) through the service's routes, on both backends: every route that
declares it refuses a sign-in older than the step-up age with 401
``insufficient-user-authentication`` and says how fresh it must be; ``POST
/auth/reauthenticate`` gives a fresh one (with the password, and a code when the second
factor is on) and replaces the session it came from."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pyotp

from bastion.clock import FrozenClock
from bastion.fastapi.routes import route_table
from bastion.testing import capture_events
from tests.attacks.test_api_oauth import providers_setting
from tests.conftest import AppMaker
from tests.helpers import STRONG_PASSWORD, user
from tests.oidc.harness import Provider

STEP_UP_ROUTES = {
    ("POST", "/auth/password/change"),
    ("POST", "/auth/mfa/totp/setup"),
    ("POST", "/auth/mfa/totp/disable"),
    ("POST", "/auth/mfa/recovery-codes"),
    ("PATCH", "/admin/users/{user_id}"),
    ("POST", "/auth/oauth/{provider}/link"),
    ("DELETE", "/auth/oauth/{provider}"),
}


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def step_up_routes(app: Any) -> set[tuple[str, str]]:
    return {
        (method, entry.path)
        for entry in route_table(app.routes)
        if any(r.step_up for r in entry.requirements)
        for method in entry.methods
    }


async def service(make: AppMaker, provider: Provider, clock: FrozenClock) -> Any:
    return await make.app(
        clock=clock,
        oauth_providers=providers_setting(provider),
        public_url="http://testserver",
        cookie_secure=False,
    )


def concrete(path: str, user_id: str) -> str:
    return path.replace("{user_id}", user_id).replace("{provider}", "corp")


async def test_every_step_up_route_refuses_an_old_sign_in_until_a_new_one(
    make: AppMaker, provider: Provider
) -> None:
    clock = FrozenClock(datetime.now(UTC))
    app = await service(make, provider, clock)
    client = await make.client(app)
    admin = await user(client, app, "root@example.com", "admin")
    clock.advance(seconds=301)  # the token lives 900 s: valid, but its sign-in is old

    assert step_up_routes(app) == STEP_UP_ROUTES  # the matrix covers every declared one
    for method, path in sorted(STEP_UP_ROUTES):
        with capture_events() as events:
            refused = await client.request(
                method, concrete(path, admin["id"]), json={}, headers=admin["auth"]
            )

        assert refused.status_code == 401, (method, path)
        assert refused.json()["type"] == "/problems/insufficient-user-authentication"
        assert refused.headers["www-authenticate"] == (
            'Bearer error="insufficient_user_authentication", max_age=300'
        )
        [event] = [e for e in events if e.event_type == "step_up_required"]
        assert "signed in 301 s ago" in (event.details or "")
        assert event.extra["decision"]["status"] == "deny"

    fresh = await client.post(
        "/auth/reauthenticate", json={"password": STRONG_PASSWORD}, headers=admin["auth"]
    )
    assert fresh.status_code == 200, fresh.text
    auth = {"Authorization": f"Bearer {fresh.json()['access_token']}"}
    for method, path in sorted(STEP_UP_ROUTES):
        answered = await client.request(method, concrete(path, admin["id"]), json={}, headers=auth)
        assert answered.status_code != 401, (method, path, answered.text)


async def test_the_step_up_age_is_a_bound(make: AppMaker, provider: Provider) -> None:
    clock = FrozenClock(datetime.now(UTC))
    app = await service(make, provider, clock)
    client = await make.client(app)
    member = await user(client, app, "ada@example.com")

    clock.advance(seconds=299)
    within = await client.post("/auth/mfa/totp/setup", headers=member["auth"])
    clock.advance(seconds=2)
    past = await client.post("/auth/mfa/totp/setup", headers=member["auth"])

    assert within.status_code == 200
    assert past.status_code == 401


async def test_reauthenticating_replaces_the_session_with_a_fresh_one(
    make: AppMaker, provider: Provider
) -> None:
    clock = FrozenClock(datetime.now(UTC))
    app = await service(make, provider, clock)
    client = await make.client(app)
    member = await user(client, app, "ada@example.com")
    clock.advance(seconds=600)

    wrong = await client.post(
        "/auth/reauthenticate", json={"password": "not my password at all"}, headers=member["auth"]
    )
    with capture_events() as events:
        fresh = await client.post(
            "/auth/reauthenticate", json={"password": STRONG_PASSWORD}, headers=member["auth"]
        )
    old_access = await client.get("/users/me", headers=member["auth"])
    old_refresh = await client.post(
        "/auth/refresh", json={"refresh_token": member["refresh_token"]}
    )

    assert wrong.status_code == 403
    assert fresh.status_code == 200
    claims = claims_of(fresh.json()["access_token"])
    assert claims["auth_time"] == int(clock.now().timestamp())
    assert claims["amr"] == ["pwd"]
    assert [e.event_type for e in events if e.event_type.startswith("step")] == ["step_up"]
    assert old_access.status_code == 401  # the session it replaced has ended
    assert old_refresh.status_code == 401


async def test_with_a_second_factor_reauthenticating_needs_a_code(
    make: AppMaker, provider: Provider
) -> None:
    clock = FrozenClock(datetime.now(UTC))
    app = await service(make, provider, clock)
    client = await make.client(app)
    member = await user(client, app, "ada@example.com")
    secret = (await client.post("/auth/mfa/totp/setup", headers=member["auth"])).json()["secret"]
    totp = pyotp.TOTP(secret)
    confirmed = await client.post(
        "/auth/mfa/totp/confirm",
        json={"code": totp.at(clock.now().timestamp())},
        headers=member["auth"],
    )
    assert confirmed.status_code == 200
    clock.advance(seconds=600)

    without = await client.post(
        "/auth/reauthenticate", json={"password": STRONG_PASSWORD}, headers=member["auth"]
    )
    wrong = await client.post(
        "/auth/reauthenticate",
        json={"password": STRONG_PASSWORD, "code": "000000"},
        headers=member["auth"],
    )
    right = await client.post(
        "/auth/reauthenticate",
        json={"password": STRONG_PASSWORD, "code": totp.at(clock.now().timestamp())},
        headers=member["auth"],
    )

    assert without.status_code == 401
    assert without.json()["type"] == "/problems/mfa-failed"
    assert wrong.status_code == 401
    assert right.status_code == 200, right.text
    assert claims_of(right.json()["access_token"])["amr"] == ["pwd", "otp"]


async def test_a_token_from_before_auth_time_existed_must_step_up(
    make: AppMaker, provider: Provider
) -> None:
    clock = FrozenClock(datetime.now(UTC))
    app = await service(make, provider, clock)
    client = await make.client(app)
    member = await user(client, app, "ada@example.com")
    security = app.state.security
    claims = claims_of(member["access_token"])
    legacy, _ = security.access_tokens.issue(
        subject=claims["sub"],
        role=claims["role"],
        session_id=claims["sid"],
        token_version=claims["tv"],
        auth_time=0,
    )

    refused = await client.post(
        "/auth/mfa/totp/setup", headers={"Authorization": f"Bearer {legacy}"}
    )

    assert refused.status_code == 401
    assert refused.json()["type"] == "/problems/insufficient-user-authentication"
