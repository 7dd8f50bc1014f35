"""Attack: lock an account against its owner, and keep guessing past the lock.

Failed logins from many addresses lock the account (``BASTION_LOGIN_LOCK_AFTER``). The
lock must stop guessing, never the owner: after it, a password check from a device the
account does not know tells a right guess from a wrong one by nothing (same 401, same
headers), and the right password emails the owner a single-use sign-in link, with
which the owner signs in while the attack goes on (OWASP Authentication Cheat Sheet,
"Account Lockout": lock out the attacker, not the user).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from bastion.metrics import LOGIN_OUTCOMES
from bastion.testing import capture_events
from tests.attacks.test_api_brute_force import WRONG, attempt, defended, device_cookie
from tests.conftest import STRONG_PASSWORD, AppMaker
from tests.helpers import add_user, link_in, mail_to, solve, without_request_id
from tests.smtp import SMTPTestServer, mail_settings

OWNER = "alice@example.com"
CONFIRM = "/auth/login/confirm"


def counting_checks(app: Any) -> list[int]:
    """Count every password check (Argon2 verification) the service runs."""
    hasher = app.state.security.accounts.login.hasher
    checks = [0]
    verify: Callable[..., Any] = hasher.verify

    async def counted(*args: Any, **kwargs: Any) -> Any:
        checks[0] += 1
        return await verify(*args, **kwargs)

    hasher.verify = counted
    return checks


async def guess(client: httpx.AsyncClient, password: str) -> httpx.Response:
    """One guess as a determined client makes it: solve the challenge when asked."""
    response = await attempt(client, OWNER, password)
    challenge = response.json().get("challenge") if response.status_code == 401 else None
    if challenge:
        response = await attempt(client, OWNER, password, solution=solve(challenge))
    return response


async def lock_by_attack(make: AppMaker, app: Any, addresses: int = 20) -> None:
    """Fail from ``addresses`` addresses, each as long as it is not made to wait."""
    for n in range(addresses):
        attacker = await make.client(app, ip=f"198.51.100.{n + 1}")
        while "Retry-After" not in (await guess(attacker, WRONG)).headers:
            pass


async def sign_in_links(app: Any, smtp: SMTPTestServer) -> list[str]:
    """The tokens of the sign-in links emailed to the owner so far."""
    await app.state.security.drain()
    return [
        link_in(m, CONFIRM)
        for m in mail_to(smtp.messages, OWNER)
        if m["Subject"].startswith("Finish signing in")
    ]


@pytest.fixture
async def locked_app(make: AppMaker, smtp: SMTPTestServer) -> Any:
    """Default thresholds (delay after 5, challenge after 10, lock after 100), locked by
    100 failed logins from 20 addresses."""
    app = await defended(make, **mail_settings(smtp))
    await add_user(app, OWNER)
    with capture_events() as events:
        await lock_by_attack(make, app)
        await app.state.security.drain()
    assert [e.event_type for e in events].count("account_locked") == 1
    return app


async def test_the_owner_signs_in_with_the_emailed_link_during_the_attack(
    make: AppMaker, locked_app: Any, smtp: SMTPTestServer
) -> None:
    owner = await make.client(locked_app, ip="192.0.2.10")
    attacker = await make.client(locked_app, ip="198.51.100.200")

    refused = await guess(owner, STRONG_PASSWORD)
    wrong = await guess(attacker, WRONG)
    [token] = await sign_in_links(locked_app, smtp)
    signed_in = await owner.post(CONFIRM, json={"token": token})
    replayed = await owner.post(CONFIRM, json={"token": token})
    cookie = device_cookie(signed_in)
    for _ in range(3):  # the attack goes on
        await guess(attacker, WRONG)
    again = await attempt(owner, OWNER, STRONG_PASSWORD, device=cookie)

    # The right password without the device cookie answers as a wrong one ...
    assert refused.status_code == wrong.status_code == 401
    assert without_request_id(refused.json()) == without_request_id(wrong.json())
    # ... but the emailed link signs the owner in, once, and trusts that device.
    assert signed_in.status_code == 200
    assert set(signed_in.json()) >= {"access_token", "refresh_token"}
    me = await owner.get(
        "/users/me", headers={"Authorization": f"Bearer {signed_in.json()['access_token']}"}
    )
    assert me.json()["email"] == OWNER
    assert replayed.status_code == 400
    assert replayed.json()["type"] == "/problems/invalid-link"
    assert again.status_code == 200


async def test_wrong_guesses_on_a_locked_account_email_nothing(
    make: AppMaker, locked_app: Any, smtp: SMTPTestServer
) -> None:
    attacker = await make.client(locked_app, ip="198.51.100.201")

    for _ in range(3):
        await guess(attacker, WRONG)

    assert await sign_in_links(locked_app, smtp) == []


async def test_after_the_lock_a_right_guess_tells_the_attacker_nothing(
    make: AppMaker, locked_app: Any, smtp: SMTPTestServer
) -> None:
    """The attacker who guesses right past the lock gets the wrong password's answer:
    no tokens, no other status, body or header; only the owner's mailbox hears of it."""
    right_ip = await make.client(locked_app, ip="198.51.100.202")
    wrong_ip = await make.client(locked_app, ip="198.51.100.203")

    right = await guess(right_ip, STRONG_PASSWORD)
    wrong = await guess(wrong_ip, WRONG)

    assert right.status_code == wrong.status_code == 401
    assert without_request_id(right.json()) == without_request_id(wrong.json())
    assert right.headers.get("Retry-After") == wrong.headers.get("Retry-After")
    assert "set-cookie" not in right.headers
    assert len(await sign_in_links(locked_app, smtp)) == 1


def logins(app: Any) -> dict[str, float]:
    """The login outcomes counted in the app's metrics (public in development)."""
    registry = app.state.metrics.registry
    return {
        o: registry.get_sample_value("bastion_logins_total", {"outcome": o}) or 0.0
        for o in LOGIN_OUTCOMES
    }


async def test_after_the_lock_the_metrics_do_not_tell_a_right_guess_either(
    make: AppMaker, locked_app: Any
) -> None:
    """/metrics is read more widely than the event log (a scraper, a dashboard): a right
    guess past the lock counts exactly as a wrong one does there."""
    attacker = await make.client(locked_app, ip="198.51.100.204")
    counts = [logins(locked_app)]

    for password in (WRONG, STRONG_PASSWORD):
        assert (await guess(attacker, password)).status_code == 401
        await locked_app.state.security.drain()
        counts.append(logins(locked_app))
    wrong, right = (
        {o: after[o] - before[o] for o in LOGIN_OUTCOMES if after[o] != before[o]}
        for before, after in itertools.pairwise(counts)
    )

    assert wrong == right


async def test_failures_counted_past_the_threshold_still_lock(
    make: AppMaker, smtp: SMTPTestServer
) -> None:
    """Failures counted before the account existed take the count past the threshold
    without a lock; the next failure must lock all the same (a count that skipped the
    threshold left the account open to guessing for good)."""
    app = await defended(
        make,
        login_lock_after=3,
        login_challenge_after=50,
        login_delay_after=50,
        **mail_settings(smtp),
    )
    attacker = await make.client(app, ip="198.51.100.30")
    for _ in range(3):
        assert (await guess(attacker, WRONG)).status_code == 401
    await add_user(app, OWNER)

    with capture_events() as events:
        assert (await guess(attacker, WRONG)).status_code == 401
        owner_on_a_new_device = await make.client(app, ip="192.0.2.30")
        right = await guess(owner_on_a_new_device, STRONG_PASSWORD)
        await app.state.security.drain()

    assert right.status_code == 401
    assert [e.event_type for e in events].count("account_locked") == 1
    assert len(await sign_in_links(app, smtp)) == 1


async def test_the_attackers_password_checks_stay_bounded(
    make: AppMaker, smtp: SMTPTestServer
) -> None:
    """20 addresses get 5 checks each before every one of them must wait (30 s,
    doubling): 100 checks lock the account, and nothing more is checked from them."""
    app = await defended(make, **mail_settings(smtp))
    await add_user(app, OWNER)
    checks = counting_checks(app)

    await lock_by_attack(make, app)
    after_lock = checks[0]
    attackers = [await make.client(app, ip=f"198.51.100.{n + 1}") for n in range(20)]
    held = [await guess(attacker, STRONG_PASSWORD) for attacker in attackers]

    assert after_lock == 100
    assert checks[0] == 100  # every further attempt waits, unchecked
    assert all(r.status_code == 401 and "Retry-After" in r.headers for r in held)


async def test_a_sign_in_link_dies_with_a_password_reset(
    make: AppMaker, locked_app: Any, smtp: SMTPTestServer
) -> None:
    owner = await make.client(locked_app, ip="192.0.2.10")
    await guess(owner, STRONG_PASSWORD)
    [token] = await sign_in_links(locked_app, smtp)
    await owner.post("/auth/password/forgot", json={"email": OWNER})
    await locked_app.state.security.drain()
    reset = link_in(mail_to(smtp.messages, OWNER)[-1], "/auth/password/reset")
    changed = await owner.post(
        "/auth/password/reset", json={"token": reset, "new_password": "a new long passphrase 77"}
    )

    refused = await owner.post(CONFIRM, json={"token": token})

    assert changed.status_code == 204
    assert refused.status_code == 400
    assert refused.json()["type"] == "/problems/invalid-link"


async def test_the_owners_device_sign_in_gives_the_attacker_no_fresh_guesses(
    make: AppMaker,
) -> None:
    """Signing in from the owner's own browser clears that browser's count, not the
    count of the attacker's failures elsewhere: the lock still comes at the threshold."""
    app = await defended(make, login_lock_after=6, login_delay_after=50, login_challenge_after=50)
    await add_user(app, OWNER)
    home = await make.client(app, ip="192.0.2.10")
    attacker = await make.client(app, ip="198.51.100.66")
    cookie = device_cookie(await attempt(home, OWNER, STRONG_PASSWORD))

    for _ in range(3):
        await attempt(attacker, OWNER, WRONG)
    owner = await attempt(home, OWNER, STRONG_PASSWORD, device=cookie)
    for _ in range(3):
        await attempt(attacker, OWNER, WRONG)

    account = await app.state.security.stores.accounts.get_by_email(OWNER)
    assert owner.status_code == 200
    assert account.locked_at is not None
