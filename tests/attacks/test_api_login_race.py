"""A login or refresh in flight never outlives a revocation that commits meanwhile.

A login reads the account, proves the password (Argon2, in a worker pool: other requests
run meanwhile) and then opens a session; a refresh rotates its token and then mints an
access token. A password change, a password reset or a logout-all that commits inside
that window revokes the sessions that exist at that moment: the one being opened must
not escape it (ASVS 7.4.3, OWASP Session Management Cheat Sheet, "Renew the session ID
after any privilege level change" and "Password changes"). Each race is driven in both
orders, deterministically: the password check or the rotation is held open after it
returned while the change commits, then released.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from bastion.passwords import PasswordHasher
from bastion.passwords.profiles import Argon2Profile
from bastion.testing import capture_events
from tests.conftest import AppMaker
from tests.helpers import STRONG_PASSWORD, add_user, link_in, login, mail_to
from tests.smtp import SMTPTestServer, mail_settings

EMAIL = "alice@example.com"
NEW_PASSWORD = "a different long passphrase 2026"
CHANGES = ["password-change", "password-reset", "logout-all"]
SESSION_CHANGES = ["password-change", "logout-all"]

Commit = Callable[[], Awaitable[None]]


class Window:
    """The next call of a coroutine method, held open after it returned until released."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, target: object, name: str) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        real = getattr(target, name)

        async def held(*args: Any, **kwargs: Any) -> Any:
            result = await real(*args, **kwargs)
            if not self.entered.is_set():  # only the first call: the request that races
                self.entered.set()
                await self.release.wait()
            return result

        monkeypatch.setattr(target, name, held)

    async def race(self, request: Awaitable[httpx.Response], commit: Commit) -> httpx.Response:
        """Send ``request``; commit the change while it is held inside the window."""
        task = asyncio.ensure_future(request)
        try:
            await asyncio.wait_for(self.entered.wait(), timeout=30)
            await commit()
        finally:
            self.release.set()
        return await task


@pytest.fixture
async def app(make: AppMaker, smtp: SMTPTestServer) -> Any:
    app = await make.app(**mail_settings(smtp))
    await add_user(app, EMAIL)
    return app


@pytest.fixture
async def client(make: AppMaker, app: Any) -> httpx.AsyncClient:
    return await make.client(app)


async def _prepare(kind: str, app: Any, client: httpx.AsyncClient, smtp: SMTPTestServer) -> Commit:
    """Everything the change needs beforehand (the owner's session, a reset link), and
    the call that commits it."""
    if kind == "password-reset":
        await client.post("/auth/password/forgot", json={"email": EMAIL})
        await app.state.security.drain()
        token = link_in(mail_to(smtp.messages, EMAIL)[-1], "/auth/password/reset")
        path, body, headers = (
            "/auth/password/reset",
            {"token": token, "new_password": NEW_PASSWORD},
            {},
        )
    else:
        owner = await login(client, EMAIL)
        headers = {"Authorization": f"Bearer {owner['access_token']}"}
        path, body = (
            ("/auth/logout-all", None)
            if kind == "logout-all"
            else (
                "/auth/password/change",
                {"current_password": STRONG_PASSWORD, "new_password": NEW_PASSWORD},
            )
        )

    async def commit() -> None:
        response = await client.post(path, json=body, headers=headers)
        assert response.status_code == 204, response.text

    return commit


def _login(client: httpx.AsyncClient) -> Awaitable[httpx.Response]:
    return client.post("/auth/login", json={"email": EMAIL, "password": STRONG_PASSWORD})


def _refresh(client: httpx.AsyncClient, refresh_token: str) -> Awaitable[httpx.Response]:
    return client.post("/auth/refresh", json={"refresh_token": refresh_token})


async def _usable(client: httpx.AsyncClient, answer: httpx.Response) -> list[str]:
    """Which of the tokens an answer carried still work (none when it carried none)."""
    if answer.status_code != 200:
        return []
    pair = answer.json()
    usable = []
    me = await client.get("/users/me", headers={"Authorization": f"Bearer {pair['access_token']}"})
    if me.status_code == 200:
        usable.append("access token")
    if (await _refresh(client, pair["refresh_token"])).status_code == 200:
        usable.append("refresh token")
    return usable


@pytest.mark.parametrize("kind", CHANGES)
async def test_a_change_inside_a_login_refuses_the_login(
    app: Any,
    client: httpx.AsyncClient,
    smtp: SMTPTestServer,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    commit = await _prepare(kind, app, client, smtp)
    window = Window(monkeypatch, app.state.security.hasher, "verify")

    with capture_events() as events:
        answer = await window.race(_login(client), commit)

    assert answer.status_code == 401, answer.text
    assert answer.json()["type"] == "/problems/invalid-credentials"
    assert any(
        e.event_type == "auth_failure" and "changed during the login" in e.details for e in events
    )


@pytest.mark.parametrize("kind", CHANGES)
async def test_a_change_after_a_login_ends_its_session(
    app: Any, client: httpx.AsyncClient, smtp: SMTPTestServer, kind: str
) -> None:
    commit = await _prepare(kind, app, client, smtp)
    answer = await _login(client)
    await commit()

    assert answer.status_code == 200
    assert await _usable(client, answer) == []


@pytest.mark.parametrize("kind", SESSION_CHANGES)
async def test_a_change_inside_a_refresh_leaves_no_usable_token(
    app: Any,
    client: httpx.AsyncClient,
    smtp: SMTPTestServer,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    racing = await login(client, EMAIL)
    commit = await _prepare(kind, app, client, smtp)
    window = Window(monkeypatch, app.state.security.stores.sessions, "rotate")

    answer = await window.race(_refresh(client, racing["refresh_token"]), commit)

    assert await _usable(client, answer) == []


@pytest.mark.parametrize("kind", SESSION_CHANGES)
async def test_a_change_after_a_refresh_ends_its_tokens(
    app: Any, client: httpx.AsyncClient, smtp: SMTPTestServer, kind: str
) -> None:
    racing = await login(client, EMAIL)
    commit = await _prepare(kind, app, client, smtp)
    answer = await _refresh(client, racing["refresh_token"])
    await commit()

    assert answer.status_code == 200
    assert await _usable(client, answer) == []


async def test_a_login_that_upgrades_the_hash_cannot_restore_the_old_password(
    app: Any, client: httpx.AsyncClient, smtp: SMTPTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A hash of an older profile: the next successful login rehashes the password.
    older = PasswordHasher(Argon2Profile(name="older", time_cost=2, memory_cost=8, parallelism=1))
    stores = app.state.security.stores
    account = await stores.accounts.get_by_email(EMAIL)
    await stores.accounts.update(account.id, password_hash=await older.hash(STRONG_PASSWORD))
    older.close()
    commit = await _prepare("password-reset", app, client, smtp)
    window = Window(monkeypatch, app.state.security.hasher, "verify")

    await window.race(_login(client), commit)
    old = await client.post("/auth/login", json={"email": EMAIL, "password": STRONG_PASSWORD})
    new = await client.post("/auth/login", json={"email": EMAIL, "password": NEW_PASSWORD})

    assert old.status_code == 401
    assert new.status_code == 200
