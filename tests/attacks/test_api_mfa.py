"""The second factor through the service's routes, on both backends: enrolment, the
second step of a login, recovery codes, turning it off; and the attacks on it: a code
replayed (on this instance and another), codes guessed, a recovery code used twice, an
``mfa_token`` reused, expired, out of attempts or brought by another client, a password
reset that would skip the factor, turning it off without a code."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pyotp
import pytest

from bastion.clock import FrozenClock
from bastion.stores import AccountChange
from bastion.testing import capture_events
from tests.conftest import AppMaker
from tests.helpers import STRONG_PASSWORD, link_in, mail_to, user
from tests.smtp import SMTPTestServer
from tests.smtp import mail_settings as smtp_settings

EMAIL = "ada@example.com"


def code(secret: str, at: datetime | None = None, *, step: int = 0) -> str:
    moment = (at or datetime.now(UTC)).timestamp() + step * 30
    return pyotp.TOTP(secret).at(moment)


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


async def enrolled(
    client: httpx.AsyncClient, app: Any, email: str = EMAIL, at: datetime | None = None
) -> dict[str, Any]:
    """A signed-in account with TOTP on: its pair, ``secret`` and ``recovery_codes``."""
    pair = await user(client, app, email)
    setup = await client.post("/auth/mfa/totp/setup", headers=pair["auth"])
    assert setup.status_code == 200, setup.text
    secret = setup.json()["secret"]
    confirm = await client.post(
        "/auth/mfa/totp/confirm", json={"code": code(secret, at)}, headers=pair["auth"]
    )
    assert confirm.status_code == 200, confirm.text
    return pair | {"secret": secret, "recovery_codes": confirm.json()["recovery_codes"]}


async def first_step(client: httpx.AsyncClient, email: str = EMAIL) -> str:
    answer = await client.post("/auth/login", json={"email": email, "password": STRONG_PASSWORD})
    assert answer.status_code == 200, answer.text
    assert answer.json()["mfa_required"] is True
    assert "access_token" not in answer.json()
    return str(answer.json()["mfa_token"])


async def verify(client: httpx.AsyncClient, mfa_token: str, value: str) -> httpx.Response:
    return await client.post("/auth/mfa/verify", json={"mfa_token": mfa_token, "code": value})


async def test_the_factor_is_on_only_once_a_code_confirms_it(make: AppMaker) -> None:
    app = await make.app()
    client = await make.client(app)
    pair = await user(client, app, EMAIL)

    setup = await client.post("/auth/mfa/totp/setup", headers=pair["auth"])
    secret = setup.json()["secret"]
    pending = (await client.get("/users/me", headers=pair["auth"])).json()
    still_password_only = await client.post(
        "/auth/login", json={"email": EMAIL, "password": STRONG_PASSWORD}
    )
    wrong = await client.post(
        "/auth/mfa/totp/confirm", json={"code": "000000"}, headers=pair["auth"]
    )
    with capture_events() as events:
        right = await client.post(
            "/auth/mfa/totp/confirm", json={"code": code(secret)}, headers=pair["auth"]
        )
    again = await client.post("/auth/mfa/totp/setup", headers=pair["auth"])

    assert setup.status_code == 200
    assert setup.headers["cache-control"] == "no-store"
    assert setup.json()["otpauth_uri"].startswith("otpauth://totp/")
    assert f"secret={secret}" in setup.json()["otpauth_uri"]
    assert setup.json()["qr_svg"].startswith("<svg")
    assert pending["mfa_enabled"] is False
    assert "access_token" in still_password_only.json()  # pending: not asked yet
    assert wrong.status_code == 401
    assert wrong.json()["type"] == "/problems/mfa-failed"
    assert right.status_code == 200
    codes = right.json()["recovery_codes"]
    assert len(codes) == len(set(codes)) == 10
    assert all(len(c.replace("-", "")) == 12 for c in codes)  # 60 bits each
    assert [e.event_type for e in events if e.event_type.startswith("mfa")] == ["mfa_enabled"]
    assert secret not in repr(events)
    assert (await client.get("/users/me", headers=pair["auth"])).json()["mfa_enabled"] is True
    assert again.status_code == 409  # on already: turn it off first


async def test_a_login_then_needs_a_code_and_its_tokens_say_so(make: AppMaker) -> None:
    app = await make.app()
    client = await make.client(app)
    account = await enrolled(client, app)

    mfa_token = await first_step(client)
    with capture_events() as events:
        done = await verify(client, mfa_token, code(account["secret"], step=1))

    assert done.status_code == 200, done.text
    assert done.headers["cache-control"] == "no-store"
    claims = claims_of(done.json()["access_token"])
    assert claims["amr"] == ["pwd", "otp"]
    assert abs(claims["auth_time"] - datetime.now(UTC).timestamp()) < 60
    me = await client.get(
        "/users/me", headers={"Authorization": f"Bearer {done.json()['access_token']}"}
    )
    assert me.status_code == 200
    assert [e.event_type for e in events] == ["auth_success"]
    refreshed = await client.post(
        "/auth/refresh", json={"refresh_token": done.json()["refresh_token"]}
    )
    kept = claims_of(refreshed.json()["access_token"])
    assert (kept["amr"], kept["auth_time"]) == (claims["amr"], claims["auth_time"])


async def test_a_code_is_accepted_once(make: AppMaker) -> None:
    app = await make.app()
    client = await make.client(app)
    account = await enrolled(client, app)
    value = code(account["secret"], step=-1)

    first = await verify(client, await first_step(client), value)
    with capture_events() as events:
        replayed = await verify(client, await first_step(client), value)

    assert first.status_code == 200
    assert replayed.status_code == 401
    assert replayed.json()["type"] == "/problems/mfa-failed"
    assert any("replayed" in (e.details or "") for e in events if e.event_type == "mfa_failed")


async def test_the_code_that_confirmed_the_factor_does_not_sign_in(make: AppMaker) -> None:
    app = await make.app()
    client = await make.client(app)
    now = datetime.now(UTC)
    account = await enrolled(client, app, at=now)

    replayed = await verify(client, await first_step(client), code(account["secret"], now))

    assert replayed.status_code == 401


# Instances share Redis; the embedded default serves from one process (production holds
# its data folder so), whose in-process store is tested above.
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_a_code_used_on_one_instance_is_refused_on_another(make: AppMaker) -> None:
    one, other = await make.app(), await make.app()
    client_one, client_other = await make.client(one), await make.client(other)
    account = await enrolled(client_one, one)
    value = code(account["secret"], step=1)

    first = await verify(client_one, await first_step(client_one), value)
    elsewhere = await verify(client_other, await first_step(client_other), value)

    assert first.status_code == 200
    assert elsewhere.status_code == 401


async def test_a_recovery_code_works_once_and_tells_the_owner(
    make: AppMaker, smtp: SMTPTestServer
) -> None:
    app = await make.app(**smtp_settings(smtp))
    client = await make.client(app)
    account = await enrolled(client, app)
    recovery = account["recovery_codes"][3]

    with capture_events() as events:
        used = await verify(client, await first_step(client), f" {recovery.upper()} ")
    again = await verify(client, await first_step(client), recovery)
    await app.state.security.drain()

    assert used.status_code == 200, used.text
    assert claims_of(used.json()["access_token"])["amr"] == ["pwd", "rec"]
    assert again.status_code == 401
    [event] = [e for e in events if e.event_type == "recovery_code_used"]
    assert event.details == "9 recovery codes left"
    assert recovery not in repr(event)
    subjects = [m["subject"] for m in mail_to(smtp.messages, EMAIL)]
    assert any("second factor was turned on" in s.lower() for s in subjects)
    assert any("recovery code was used" in s.lower() for s in subjects)


async def test_an_mfa_token_works_once_and_for_five_codes(make: AppMaker) -> None:
    app = await make.app()
    client = await make.client(app)
    account = await enrolled(client, app)

    mfa_token = await first_step(client)
    done = await verify(client, mfa_token, code(account["secret"], step=1))
    reused = await verify(client, mfa_token, code(account["secret"]))
    exhausted = await first_step(client)
    wrong = [await verify(client, exhausted, "123456") for _ in range(5)]
    sixth = await verify(client, exhausted, code(account["secret"], step=-1))

    assert done.status_code == 200
    assert reused.status_code == 401
    assert [r.status_code for r in wrong] == [401] * 5
    assert sixth.status_code == 401  # the right code, but no attempt left


async def test_an_mfa_token_expires_after_five_minutes(make: AppMaker) -> None:
    clock = FrozenClock(datetime.now(UTC))
    app = await make.app(clock=clock)
    client = await make.client(app)
    account = await enrolled(client, app, at=clock.now())

    mfa_token = await first_step(client)
    clock.advance(seconds=301)
    late = await verify(client, mfa_token, code(account["secret"], clock.now()))

    assert late.status_code == 401


async def test_an_mfa_token_is_refused_to_another_client(make: AppMaker) -> None:
    app = await make.app()
    client = await make.client(app)
    attacker = await make.client(app, ip="198.51.100.23")
    account = await enrolled(client, app)

    mfa_token = await first_step(client)
    stolen = await verify(attacker, mfa_token, code(account["secret"], step=1))
    other_agent = await client.post(
        "/auth/mfa/verify",
        json={"mfa_token": mfa_token, "code": code(account["secret"], step=1)},
        headers={"User-Agent": "another browser"},
    )
    forged = await verify(client, mfa_token[:-4] + "AAAA", code(account["secret"]))

    assert stolen.status_code == 401
    assert other_agent.status_code == 401
    assert forged.status_code == 401


async def test_guessing_codes_is_limited_per_account(make: AppMaker) -> None:
    app = await make.app(rate_limit_enabled=True)
    client = await make.client(app)
    account = await enrolled(client, app)

    answers = []
    for _ in range(3):
        mfa_token = await first_step(client)
        answers += [(await verify(client, mfa_token, "000000")).status_code for _ in range(4)]
    right = await verify(client, await first_step(client), code(account["secret"], step=1))

    assert answers[:8] == [401] * 8  # the first guesses of the ten of five minutes
    assert 429 in answers
    assert right.status_code == 429  # past the limit, even the right code waits


async def test_wrong_codes_count_toward_the_login_lock(make: AppMaker) -> None:
    app = await make.app(login_defence_enabled=True, login_lock_after=4, login_delay_after=100)
    client = await make.client(app)
    account = await enrolled(client, app)

    guesses = []
    for _ in range(2):
        mfa_token = await first_step(client)
        guesses += [(await verify(client, mfa_token, "000000")).status_code for _ in range(2)]
    after = await client.post("/auth/login", json={"email": EMAIL, "password": STRONG_PASSWORD})

    assert guesses == [401] * 4
    assert after.status_code == 401  # locked: the right password answers as a wrong one
    assert account["secret"]


async def test_a_password_reset_does_not_skip_the_factor(
    make: AppMaker, smtp: SMTPTestServer
) -> None:
    app = await make.app(**smtp_settings(smtp))
    client = await make.client(app)
    await enrolled(client, app)

    await client.post("/auth/password/forgot", json={"email": EMAIL})
    await app.state.security.drain()
    token = link_in(mail_to(smtp.messages, EMAIL)[-1], "/auth/password/reset")
    new_password = STRONG_PASSWORD + " again"
    reset = await client.post(
        "/auth/password/reset", json={"token": token, "new_password": new_password}
    )
    login = await client.post("/auth/login", json={"email": EMAIL, "password": new_password})

    assert reset.status_code == 204
    assert login.json().get("mfa_required") is True


async def test_turning_it_off_needs_the_password_and_a_code(make: AppMaker) -> None:
    app = await make.app()
    client = await make.client(app)
    account = await enrolled(client, app)
    auth = account["auth"]

    without_code = await client.post(
        "/auth/mfa/totp/disable", json={"password": STRONG_PASSWORD}, headers=auth
    )
    wrong_code = await client.post(
        "/auth/mfa/totp/disable",
        json={"password": STRONG_PASSWORD, "code": "000000"},
        headers=auth,
    )
    wrong_password = await client.post(
        "/auth/mfa/totp/disable",
        json={"password": "not the password at all", "code": code(account["secret"], step=1)},
        headers=auth,
    )
    with capture_events() as events:
        off = await client.post(
            "/auth/mfa/totp/disable",
            json={"password": STRONG_PASSWORD, "code": code(account["secret"], step=-1)},
            headers=auth,
        )
    login = await client.post("/auth/login", json={"email": EMAIL, "password": STRONG_PASSWORD})

    assert without_code.status_code == 422
    assert wrong_code.status_code == 401
    assert wrong_password.status_code == 403
    assert off.status_code == 204
    assert [e.event_type for e in events] == ["mfa_disabled"]
    assert "access_token" in login.json()
    assert (await client.get("/users/me", headers=auth)).json()["mfa_enabled"] is False


async def test_the_secret_is_sealed_in_the_database(make: AppMaker) -> None:
    app = await make.app()
    client = await make.client(app)
    account = await enrolled(client, app)
    stores = app.state.security.stores

    factor = await stores.mfa.factor(uuid.UUID(account["id"]))

    assert account["secret"] not in factor.secret
    assert factor.secret.startswith("v1.")


async def test_admins_without_a_second_factor_may_only_enrol_when_it_is_required(
    make: AppMaker,
) -> None:
    app = await make.app(mfa_required="admins")
    client = await make.client(app)
    admin = await user(client, app, "root@example.com", "admin")
    member = await user(client, app, EMAIL)

    refused = await client.get("/admin/users", headers=admin["auth"])
    me = await client.get("/users/me", headers=admin["auth"])
    setup = await client.post("/auth/mfa/totp/setup", headers=admin["auth"])
    secret = setup.json()["secret"]
    confirm = await client.post(
        "/auth/mfa/totp/confirm", json={"code": code(secret)}, headers=admin["auth"]
    )
    still = await client.get("/admin/users", headers=admin["auth"])  # signed in without it
    fresh = await client.post(
        "/auth/reauthenticate",
        json={"password": STRONG_PASSWORD, "code": code(secret, step=1)},
        headers=admin["auth"],
    )
    allowed = await client.get(
        "/admin/users", headers={"Authorization": f"Bearer {fresh.json()['access_token']}"}
    )

    assert refused.status_code == 403
    assert "second factor" in refused.json()["detail"]
    assert me.status_code == 200
    assert (setup.status_code, confirm.status_code) == (200, 200)
    assert still.status_code == 403
    assert fresh.status_code == 200, fresh.text
    assert allowed.status_code == 200
    assert (await client.get("/tasks", headers=member["auth"])).status_code == 200


async def test_everyone_must_enrol_when_it_is_required_of_everyone(make: AppMaker) -> None:
    app = await make.app(mfa_required="everyone")
    client = await make.client(app)
    member = await user(client, app, EMAIL)

    tasks = await client.get("/tasks", headers=member["auth"])
    out = await client.post("/auth/logout", headers=member["auth"])

    assert tasks.status_code == 403
    assert out.status_code == 204  # signing out is always allowed


# -- found by an outside review ----------------------------------------------------------


@pytest.mark.parametrize(
    "mfa_token", ["m1.eyJ9.\u00e9\u00e9", "m1.\u00e9.x", "\u00e9" * 40, "m1..", "m1.e30.e30"]
)
async def test_a_non_ascii_or_odd_mfa_token_is_refused_not_a_500(
    make: AppMaker, mfa_token: str
) -> None:
    app = await make.app()
    client = await make.client(app)

    refused = await verify(client, mfa_token, "123456")

    assert refused.status_code == 401
    assert refused.json()["type"] == "/problems/mfa-failed"


async def test_a_used_mfa_token_spends_no_more_codes(make: AppMaker) -> None:
    app = await make.app()
    client = await make.client(app)
    account = await enrolled(client, app)
    mfa = app.state.security.accounts.mfa
    user_id = uuid.UUID(account["id"])

    mfa_token = await first_step(client)
    assert (await verify(client, mfa_token, account["recovery_codes"][0])).status_code == 200
    with capture_events() as events:
        dead = [await verify(client, mfa_token, c) for c in account["recovery_codes"][1:5]]

    assert [r.status_code for r in dead] == [401] * 4
    assert await mfa.recovery_codes_left(user_id) == 9  # only the one that signed in
    assert [e for e in events if e.event_type == "recovery_code_used"] == []


async def test_codes_sent_at_once_with_one_mfa_token_open_one_session_and_spend_one(
    make: AppMaker,
) -> None:
    app = await make.app()
    client = await make.client(app)
    account = await enrolled(client, app)
    mfa_token = await first_step(client)

    answers = await asyncio.gather(
        *(verify(client, mfa_token, c) for c in account["recovery_codes"][:3])
    )

    assert sorted(a.status_code for a in answers) == [200, 401, 401]
    left = await app.state.security.accounts.mfa.recovery_codes_left(uuid.UUID(account["id"]))
    assert left == 9


async def test_a_locked_account_answers_a_right_code_as_a_wrong_one_and_spends_nothing(
    make: AppMaker,
) -> None:
    app = await make.app()
    client = await make.client(app)
    account = await enrolled(client, app)
    security = app.state.security
    user_id = uuid.UUID(account["id"])
    mfa_token = await first_step(client)
    await security.stores.accounts.change(
        user_id,
        AccountChange(locked=True, bump_token_version=False),
        now=datetime.now(UTC),
        events=lambda before, after: [],
    )

    right = await verify(client, mfa_token, account["recovery_codes"][0])
    wrong = await verify(client, mfa_token, "zzzz-zzzz-zzzz")

    assert (right.status_code, right.json()["type"]) == (401, "/problems/mfa-failed")
    assert (wrong.status_code, wrong.json()["type"]) == (401, "/problems/mfa-failed")
    assert await security.accounts.mfa.recovery_codes_left(user_id) == 10


async def test_setups_at_once_answer_and_the_last_one_is_kept(make: AppMaker) -> None:
    app = await make.app()
    client = await make.client(app)
    member = await user(client, app, EMAIL)

    answers = await asyncio.gather(
        *(client.post("/auth/mfa/totp/setup", headers=member["auth"]) for _ in range(4))
    )

    assert [a.status_code for a in answers] == [200] * 4  # a double click is no error
    factor = await app.state.security.stores.mfa.factor(uuid.UUID(member["id"]))
    assert factor is not None
    assert factor.confirmed_at is None


@pytest.mark.parametrize("route", ["disable", "confirm"])
async def test_wrong_codes_turning_it_off_or_on_count_toward_the_login_lock(
    make: AppMaker, route: str
) -> None:
    app = await make.app(login_defence_enabled=True, login_lock_after=3, login_delay_after=100)
    client = await make.client(app)
    if route == "disable":
        account = await enrolled(client, app)
        body = {"password": STRONG_PASSWORD, "code": "000000"}
    else:
        account = await user(client, app, EMAIL)
        await client.post("/auth/mfa/totp/setup", headers=account["auth"])
        body = {"code": "000000"}

    guesses = [
        (await client.post(f"/auth/mfa/totp/{route}", json=body, headers=account["auth"]))
        for _ in range(3)
    ]
    after = await client.post("/auth/login", json={"email": EMAIL, "password": STRONG_PASSWORD})

    assert [g.status_code for g in guesses] == [401] * 3
    assert after.status_code == 401  # locked


async def test_reauthenticating_counts_wrong_passwords_and_a_lock_answers_alike(
    make: AppMaker,
) -> None:
    app = await make.app(login_defence_enabled=True, login_lock_after=3, login_delay_after=100)
    client = await make.client(app)
    member = await user(client, app, EMAIL)

    wrong = [
        await client.post(
            "/auth/reauthenticate",
            json={"password": "not the password at all"},
            headers=member["auth"],
        )
        for _ in range(3)
    ]
    locked_wrong = await client.post(
        "/auth/reauthenticate", json={"password": "still not the password"}, headers=member["auth"]
    )
    locked_right = await client.post(
        "/auth/reauthenticate", json={"password": STRONG_PASSWORD}, headers=member["auth"]
    )

    assert [w.status_code for w in wrong] == [403] * 3
    assert locked_wrong.status_code == locked_right.status_code == 401
    assert locked_wrong.json()["type"] == locked_right.json()["type"]


async def test_new_recovery_codes_are_told_to_the_owner(
    make: AppMaker, smtp: SMTPTestServer
) -> None:
    app = await make.app(**smtp_settings(smtp))
    client = await make.client(app)
    account = await enrolled(client, app)

    with capture_events() as events:
        fresh = await client.post("/auth/mfa/recovery-codes", headers=account["auth"])
    old = await verify(client, await first_step(client), account["recovery_codes"][0])
    await app.state.security.drain()

    assert fresh.status_code == 200
    assert set(fresh.json()["recovery_codes"]).isdisjoint(account["recovery_codes"])
    assert old.status_code == 401
    assert [e.event_type for e in events] == ["recovery_codes_replaced"]
    subjects = [m["subject"].lower() for m in mail_to(smtp.messages, EMAIL)]
    assert any("new recovery codes" in s for s in subjects)


async def test_a_cookie_session_steps_up_into_a_new_cookie_session(make: AppMaker) -> None:
    app = await make.app()
    await user(await make.client(app), app, EMAIL)
    transport = httpx.ASGITransport(
        app=app, raise_app_exceptions=False, client=("198.51.100.20", 1)
    )
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as browser:
        pre = (await browser.get("/auth/csrf")).json()["csrf_token"]
        login = await browser.post(
            "/auth/login",
            json={"email": EMAIL, "password": STRONG_PASSWORD},
            headers={"X-CSRF-Token": pre},
        )
        csrf = login.json()["csrf_token"]

        fresh = await browser.post(
            "/auth/reauthenticate",
            json={"password": STRONG_PASSWORD},
            headers={"X-CSRF-Token": csrf},
        )
        new_csrf = fresh.json().get("csrf_token", "")
        setup = await browser.post("/auth/mfa/totp/setup", headers={"X-CSRF-Token": new_csrf})

    assert fresh.status_code == 200, fresh.text
    assert "access_token" not in fresh.json()  # never readable by the page's scripts
    assert "refresh_token" not in fresh.json()
    assert fresh.json()["token_type"] == "cookie"
    assert setup.status_code == 200, setup.text
