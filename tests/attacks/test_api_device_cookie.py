"""Attack: keep, alter, forge or garble the login defence's device cookie.

A device cookie lets its browser past the account's challenge, delays and lock, so it
must die on the server: with the password it was issued under (a change or a reset) and
at its server-side expiry (``BASTION_LOGIN_DEVICE_TTL_SECONDS``), whatever the browser
keeps. An altered or forged one is no cookie; a malformed one (non-ASCII, huge, empty,
repeated) is no cookie either, and never an error.

Each test locks the account first: then a login with the right password answers 200
exactly when the cookie it carries still counts, and 401 when it counts as absent.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from bastion.clock import FrozenClock
from tests.attacks.test_api_brute_force import (
    DEVICE_COOKIE,
    WRONG,
    attempt,
    defended,
    device_cookie,
)
from tests.conftest import STRONG_PASSWORD, AppMaker
from tests.helpers import add_user, link_in, mail_to
from tests.smtp import SMTPTestServer, mail_settings

OWNER = "alice@example.com"
NEW_PASSWORD = "a new long passphrase 77"
LOCKING = {"login_lock_after": 3, "login_delay_after": 50, "login_challenge_after": 50}


async def lock(make: AppMaker, app: Any) -> None:
    attacker = await make.client(app, ip="198.51.100.66")
    for _ in range(3):
        await attempt(attacker, OWNER, WRONG)
    account = await app.state.security.stores.accounts.get_by_email(OWNER)
    assert account.locked_at is not None


async def with_cookie(
    client: httpx.AsyncClient, value: str | bytes, password: str = STRONG_PASSWORD
) -> httpx.Response:
    raw = value if isinstance(value, bytes) else value.encode()
    return await client.post(
        "/auth/login",
        json={"email": OWNER, "password": password},
        headers={"Cookie": b"%s=%s" % (DEVICE_COOKIE.encode(), raw)},
    )


def altered(cookie: str, part: int, value: str) -> str:
    parts = cookie.split(".")
    parts[part] = value
    return ".".join(parts)


async def test_a_device_cookie_dies_with_a_password_reset(
    make: AppMaker, smtp: SMTPTestServer
) -> None:
    app = await defended(make, **LOCKING, **mail_settings(smtp))
    await add_user(app, OWNER)
    home = await make.client(app, ip="192.0.2.10")
    before = device_cookie(await attempt(home, OWNER, STRONG_PASSWORD))
    await home.post("/auth/password/forgot", json={"email": OWNER})
    await app.state.security.drain()
    token = link_in(mail_to(smtp.messages, OWNER)[-1], "/auth/password/reset")
    reset = await home.post(
        "/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD}
    )
    after = device_cookie(await attempt(home, OWNER, NEW_PASSWORD))
    await lock(make, app)

    old = await with_cookie(home, before, NEW_PASSWORD)
    new = await with_cookie(home, after, NEW_PASSWORD)

    assert reset.status_code == 204
    assert old.status_code == 401  # issued under the old password: absent
    assert new.status_code == 200


async def test_a_device_cookie_dies_with_a_password_change(make: AppMaker) -> None:
    app = await defended(make, **LOCKING)
    await add_user(app, OWNER)
    home = await make.client(app, ip="192.0.2.10")
    signed_in = await attempt(home, OWNER, STRONG_PASSWORD)
    before = device_cookie(signed_in)
    changed = await home.post(
        "/auth/password/change",
        json={"current_password": STRONG_PASSWORD, "new_password": NEW_PASSWORD},
        headers={"Authorization": f"Bearer {signed_in.json()['access_token']}"},
    )
    await lock(make, app)

    old = await with_cookie(home, before, NEW_PASSWORD)

    assert changed.status_code == 204
    assert old.status_code == 401


async def test_an_expired_device_cookie_is_refused(make: AppMaker) -> None:
    clock = FrozenClock()
    app = await defended(make, clock=clock, login_device_ttl_seconds=3600, **LOCKING)
    await add_user(app, OWNER)
    home = await make.client(app, ip="192.0.2.10")
    issued = await attempt(home, OWNER, STRONG_PASSWORD)
    cookie = device_cookie(issued)
    await lock(make, app)

    clock.advance(3599)
    fresh = await with_cookie(home, cookie)
    clock.advance(1)
    expired = await with_cookie(home, cookie)

    assert "max-age=3600" in issued.headers["set-cookie"].lower()
    assert fresh.status_code == 200
    assert expired.status_code == 401


@pytest.mark.parametrize(
    ("part", "value"),
    [
        pytest.param(4, "0" * 40, id="mac-replaced"),
        pytest.param(2, "9999999999", id="issue-time-moved"),
        pytest.param(3, "00000000", id="generation-replaced"),
        pytest.param(1, "A" * 22, id="nonce-replaced"),
        pytest.param(0, "d1", id="older-version"),
    ],
)
async def test_an_altered_device_cookie_is_refused(make: AppMaker, part: int, value: str) -> None:
    app = await defended(make, **LOCKING)
    await add_user(app, OWNER)
    home = await make.client(app, ip="192.0.2.10")
    cookie = device_cookie(await attempt(home, OWNER, STRONG_PASSWORD))
    await lock(make, app)

    genuine = await with_cookie(home, cookie)
    forged = await with_cookie(home, altered(cookie, part, value))

    assert genuine.status_code == 200
    assert forged.status_code == 401


async def test_another_accounts_device_cookie_is_refused(make: AppMaker) -> None:
    app = await defended(make, **LOCKING)
    await add_user(app, OWNER)
    await add_user(app, "mallory@example.com")
    home = await make.client(app, ip="192.0.2.10")
    cookie = device_cookie(
        await home.post(
            "/auth/login", json={"email": "mallory@example.com", "password": STRONG_PASSWORD}
        )
    )
    await lock(make, app)

    assert (await with_cookie(home, cookie)).status_code == 401


MALFORMED = [
    pytest.param("d2.é".encode(), id="non-ascii-utf8"),
    pytest.param(b"d2.\xff\xfe\x80", id="non-ascii-bytes"),
    pytest.param(("ü" * 40).encode(), id="non-ascii-text"),
    # Well-shaped up to the MAC, which is not ASCII: must not reach a comparison that raises.
    pytest.param("d1.AAAAAAAAAAAAAAAAAAAAAA.é".encode(), id="non-ascii-mac-d1"),
    pytest.param(
        ("d2.AAAAAAAAAAAAAAAAAAAAAA.1800000000.00000000." + "0" * 39 + "é").encode(),
        id="non-ascii-mac-d2",
    ),
    pytest.param(b"d2." + b"a" * 8_000, id="huge"),
    pytest.param(b"", id="empty"),
    pytest.param(b'"d2.x"', id="quoted"),
    pytest.param(b"d2..0..", id="empty-parts"),
    pytest.param(b"d2.AAAAAAAAAAAAAAAAAAAAAA.-1.00000000." + b"0" * 40, id="negative-time"),
]


@pytest.mark.parametrize("value", MALFORMED)
async def test_a_malformed_device_cookie_is_absent_not_an_error(
    make: AppMaker, caplog: pytest.LogCaptureFixture, value: bytes
) -> None:
    app = await defended(make, **LOCKING)
    await add_user(app, OWNER)
    await add_user(app, "bob@example.com")
    home = await make.client(app, ip="192.0.2.10")
    await lock(make, app)

    with caplog.at_level(logging.ERROR):
        locked = await with_cookie(home, value)
        other = await home.post(
            "/auth/login",
            json={"email": "bob@example.com", "password": STRONG_PASSWORD},
            headers={"Cookie": b"%s=%s" % (DEVICE_COOKIE.encode(), value)},
        )

    assert locked.status_code == 401  # no cookie: the lock holds
    assert other.status_code == 200  # no cookie: an ordinary login
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("second", ["copy", "garbage"])
async def test_a_repeated_device_cookie_is_absent(make: AppMaker, second: str) -> None:
    """Two cookies of one name (one of them planted) are ambiguous: neither counts."""
    app = await defended(make, **LOCKING)
    await add_user(app, OWNER)
    home = await make.client(app, ip="192.0.2.10")
    cookie = device_cookie(await attempt(home, OWNER, STRONG_PASSWORD))
    await lock(make, app)
    other = cookie if second == "copy" else "d2.planted"

    repeated = await home.post(
        "/auth/login",
        json={"email": OWNER, "password": STRONG_PASSWORD},
        headers={"Cookie": f"{DEVICE_COOKIE}={cookie}; {DEVICE_COOKIE}={other}"},
    )

    assert repeated.status_code == 401
