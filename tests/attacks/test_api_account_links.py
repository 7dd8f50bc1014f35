"""Attacks on the emailed-link flows (OWASP Forgot Password Cheat Sheet, ASVS 6.3.8,
6.4.x, API2:2023, API4:2023): enumeration by answer or timing, link reuse, expiry,
replay after the state changed, splicing two links, racing one link, mail bombing, and
tokens leaking into the database, events or logs.

Timing is compared between two kinds of request sent alternately in this process (no
network): the medians must agree within noise. The bound is loose on purpose (the
machines are shared); a flow that looked the account up or sent the email before
answering would exceed it many times over.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from bastion.clock import FrozenClock
from bastion.testing import capture_events
from tests.conftest import AppMaker
from tests.helpers import STRONG_PASSWORD, add_user, link_in, login, mail_to, without_request_id
from tests.smtp import SMTPTestServer, mail_settings

NEW_PASSWORD = "a different long passphrase 2026"


async def _reset_token(app: Any, client: httpx.AsyncClient, smtp: SMTPTestServer) -> str:
    await client.post("/auth/password/forgot", json={"email": "alice@example.com"})
    await app.state.security.drain()
    return link_in(mail_to(smtp.messages, "alice@example.com")[-1], "/auth/password/reset")


async def _reset(client: httpx.AsyncClient, token: str, password: str = NEW_PASSWORD) -> int:
    response = await client.post(
        "/auth/password/reset", json={"token": token, "new_password": password}
    )
    return response.status_code


async def _medians_ms(
    first: Callable[[], Awaitable[Any]], second: Callable[[], Awaitable[Any]], rounds: int = 40
) -> tuple[float, float]:
    for call in (first, second, first, second):  # warm both paths up
        await call()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(rounds):
        for index, call in enumerate((first, second)):
            started = time.perf_counter()
            await call()
            times[index].append((time.perf_counter() - started) * 1000)
    return statistics.median(times[0]), statistics.median(times[1])


def _within_noise(a: float, b: float) -> bool:
    return abs(a - b) <= 0.5 * min(a, b) + 1.0


# -- enumeration ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    ["nobody@example.com", "carol@example.com", "ALICE@example.com"],
    ids=["unknown", "disabled", "known-other-case"],
)
async def test_forgot_password_answers_alike_for_every_address(
    client: httpx.AsyncClient, app: Any, address: str
) -> None:
    await add_user(app, "alice@example.com")
    await add_user(app, "carol@example.com", is_active=False)
    known = await client.post("/auth/password/forgot", json={"email": "alice@example.com"})

    other = await client.post("/auth/password/forgot", json={"email": address})

    assert known.status_code == other.status_code == 202
    assert known.json() == other.json()
    assert set(known.headers) == set(other.headers)


async def test_forgot_password_timing_does_not_tell_accounts_apart(
    make: AppMaker, smtp: SMTPTestServer
) -> None:
    app = await make.app(**mail_settings(smtp))
    client = await make.client(app)
    await add_user(app, "alice@example.com")

    known, unknown = await _medians_ms(
        lambda: client.post("/auth/password/forgot", json={"email": "alice@example.com"}),
        lambda: client.post("/auth/password/forgot", json={"email": "nobody@example.com"}),
    )
    await app.state.security.drain()

    assert _within_noise(known, unknown), f"known {known:.2f} ms, unknown {unknown:.2f} ms"
    assert mail_to(smtp.messages, "nobody@example.com") == []


async def test_registration_timing_does_not_tell_taken_addresses_apart(
    make: AppMaker, smtp: SMTPTestServer
) -> None:
    app = await make.app(**mail_settings(smtp))
    client = await make.client(app)
    await add_user(app, "alice@example.com")
    counter = iter(range(10_000))

    taken, new = await _medians_ms(
        lambda: client.post(
            "/auth/register", json={"email": "alice@example.com", "password": NEW_PASSWORD}
        ),
        lambda: client.post(
            "/auth/register",
            json={"email": f"new-{next(counter)}@example.com", "password": NEW_PASSWORD},
        ),
        rounds=25,
    )
    await app.state.security.drain()

    assert _within_noise(taken, new), f"taken {taken:.2f} ms, new {new:.2f} ms"


async def test_a_verification_request_answers_alike_for_every_address(
    client: httpx.AsyncClient, app: Any
) -> None:
    await add_user(app, "alice@example.com")

    known = await client.post("/auth/email/verify/request", json={"email": "alice@example.com"})
    unknown = await client.post("/auth/email/verify/request", json={"email": "nobody@example.com"})

    assert known.status_code == unknown.status_code == 202
    assert known.json() == unknown.json()


# -- throttles ------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["alice@example.com", "nobody@example.com"])
async def test_forgot_password_is_limited_per_address_alike_for_unknown_ones(
    make: AppMaker, address: str
) -> None:
    app = await make.app(rate_limit_enabled=True)
    await add_user(app, "alice@example.com")
    answers = []
    for ip in ("198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4"):
        client = await make.client(app, ip=ip)  # a new IP each time: the per-IP limit stays clear
        answers.append(await client.post("/auth/password/forgot", json={"email": address}))

    assert [a.status_code for a in answers] == [202, 202, 202, 429]
    assert answers[-1].json()["violated-policies"] == ["password-reset-account"]
    assert "retry-after" in answers[-1].headers


async def test_forgot_password_is_limited_per_ip(make: AppMaker) -> None:
    app = await make.app(rate_limit_enabled=True)
    client = await make.client(app, ip="198.51.100.9")
    statuses = [
        (
            await client.post("/auth/password/forgot", json={"email": f"u{i}@example.com"})
        ).status_code
        for i in range(6)
    ]

    assert statuses == [202] * 5 + [429]


async def test_one_address_gets_at_most_a_few_emails_an_hour(
    make: AppMaker, smtp: SMTPTestServer
) -> None:
    app = await make.app(**mail_settings(smtp), rate_limit_enabled=True)
    await add_user(app, "alice@example.com")
    for i in range(8):  # registrations of a taken address, each from a new IP
        client = await make.client(app, ip=f"198.51.100.{10 + i}")
        await client.post(
            "/auth/register", json={"email": "alice@example.com", "password": NEW_PASSWORD}
        )

    await app.state.security.drain()

    assert len(mail_to(smtp.messages, "alice@example.com")) == 5


async def test_a_full_mail_cap_never_silences_a_reset_link(
    make: AppMaker, smtp: SMTPTestServer
) -> None:
    app = await make.app(**mail_settings(smtp), rate_limit_enabled=True)
    await add_user(app, "alice@example.com")
    for i in range(6):  # an attacker fills the cap with notices
        client = await make.client(app, ip=f"198.51.100.{40 + i}")
        await client.post(
            "/auth/register", json={"email": "alice@example.com", "password": NEW_PASSWORD}
        )
    owner = await make.client(app, ip="192.0.2.10")

    await owner.post("/auth/password/forgot", json={"email": "alice@example.com"})
    await app.state.security.drain()

    assert link_in(mail_to(smtp.messages, "alice@example.com")[-1], "/auth/password/reset")


async def test_plus_tags_share_their_mailbox_cap(make: AppMaker, smtp: SMTPTestServer) -> None:
    app = await make.app(**mail_settings(smtp), rate_limit_enabled=True)
    for i in range(8):
        client = await make.client(app, ip=f"198.51.100.{60 + i}")
        await client.post(
            "/auth/register", json={"email": f"bob+{i}@example.com", "password": NEW_PASSWORD}
        )

    await app.state.security.drain()

    assert len([m for m in smtp.messages if m["To"].startswith("bob+")]) == 5


async def test_a_revocation_kills_an_outstanding_reset_link(
    make: AppMaker, smtp: SMTPTestServer
) -> None:
    app = await make.app(**mail_settings(smtp))
    client = await make.client(app)
    await add_user(app, "alice@example.com")
    token = await _reset_token(app, client, smtp)
    pair = await login(client, "alice@example.com")

    await client.post(
        "/auth/logout-all", headers={"Authorization": f"Bearer {pair['access_token']}"}
    )

    assert await _reset(client, token) == 400


# -- the links themselves ---------------------------------------------------------------


@pytest.fixture
async def mail_app(make: AppMaker, smtp: SMTPTestServer) -> Any:
    app = await make.app(**mail_settings(smtp))
    await add_user(app, "alice@example.com")
    return app


@pytest.fixture
async def mail_client(make: AppMaker, mail_app: Any) -> httpx.AsyncClient:
    return await make.client(mail_app)


async def test_a_reset_link_works_once(
    mail_app: Any, mail_client: httpx.AsyncClient, smtp: SMTPTestServer
) -> None:
    token = await _reset_token(mail_app, mail_client, smtp)

    first = await _reset(mail_client, token)
    replay = await mail_client.post(
        "/auth/password/reset", json={"token": token, "new_password": "yet another passphrase 99"}
    )

    assert first == 204
    assert replay.status_code == 400
    assert replay.json()["type"] == "/problems/invalid-link"
    assert token not in replay.text


async def test_racing_one_reset_link_changes_the_password_once(
    mail_app: Any, mail_client: httpx.AsyncClient, smtp: SMTPTestServer
) -> None:
    token = await _reset_token(mail_app, mail_client, smtp)

    statuses = await asyncio.gather(
        *(_reset(mail_client, token, f"racing passphrase number {i} x") for i in range(5))
    )

    assert sorted(statuses) == [204, 400, 400, 400, 400]


async def test_an_expired_reset_link_is_refused(make: AppMaker, smtp: SMTPTestServer) -> None:
    clock = FrozenClock()
    app = await make.app(clock=clock, **mail_settings(smtp), password_reset_ttl_seconds=1800)
    client = await make.client(app)
    await add_user(app, "alice@example.com")
    token = await _reset_token(app, client, smtp)

    clock.advance(1800)

    assert await _reset(client, token) == 400


async def test_an_expired_verification_link_is_refused(
    make: AppMaker, smtp: SMTPTestServer
) -> None:
    clock = FrozenClock()
    app = await make.app(clock=clock, **mail_settings(smtp))
    client = await make.client(app)
    await client.post(
        "/auth/register", json={"email": "new@example.com", "password": STRONG_PASSWORD}
    )
    await app.state.security.drain()
    token = link_in(mail_to(smtp.messages, "new@example.com")[-1], "/auth/email/verify")

    clock.advance(24 * 3600)
    response = await client.post("/auth/email/verify", json={"token": token})

    assert response.status_code == 400


async def test_a_verification_link_cannot_reset_a_password(
    make: AppMaker, smtp: SMTPTestServer
) -> None:
    app = await make.app(**mail_settings(smtp))
    client = await make.client(app)
    await client.post(
        "/auth/register", json={"email": "new@example.com", "password": STRONG_PASSWORD}
    )
    await app.state.security.drain()
    token = link_in(mail_to(smtp.messages, "new@example.com")[-1], "/auth/email/verify")

    assert await _reset(client, token) == 400


async def test_a_newer_reset_link_kills_the_older(
    mail_app: Any, mail_client: httpx.AsyncClient, smtp: SMTPTestServer
) -> None:
    older = await _reset_token(mail_app, mail_client, smtp)
    newer = await _reset_token(mail_app, mail_client, smtp)

    assert await _reset(mail_client, older) == 400
    assert await _reset(mail_client, newer) == 204


async def test_a_password_change_kills_an_outstanding_reset_link(
    mail_app: Any, mail_client: httpx.AsyncClient, smtp: SMTPTestServer
) -> None:
    token = await _reset_token(mail_app, mail_client, smtp)
    pair = await login(mail_client, "alice@example.com")
    changed = await mail_client.post(
        "/auth/password/change",
        json={"current_password": STRONG_PASSWORD, "new_password": "changed in the meantime 7"},
        headers={"Authorization": f"Bearer {pair['access_token']}"},
    )

    assert changed.status_code == 204
    assert await _reset(mail_client, token) == 400


async def test_a_spliced_link_of_two_accounts_is_refused(
    mail_app: Any, mail_client: httpx.AsyncClient, smtp: SMTPTestServer
) -> None:
    await add_user(mail_app, "mallory@example.com")
    alices = await _reset_token(mail_app, mail_client, smtp)
    await mail_client.post("/auth/password/forgot", json={"email": "mallory@example.com"})
    await mail_app.state.security.drain()
    mallorys = link_in(mail_to(smtp.messages, "mallory@example.com")[-1], "/auth/password/reset")

    spliced = f"{alices.partition('.')[0]}.{mallorys.partition('.')[2]}"

    assert await _reset(mail_client, spliced) == 400
    assert await _reset(mail_client, alices) == 204


async def test_a_disabled_account_cannot_use_its_reset_link(
    mail_app: Any, mail_client: httpx.AsyncClient, smtp: SMTPTestServer
) -> None:
    token = await _reset_token(mail_app, mail_client, smtp)
    alice = await mail_app.state.security.stores.accounts.get_by_email("alice@example.com")
    await mail_app.state.security.stores.accounts.update(alice.id, is_active=False)

    assert await _reset(mail_client, token) == 400


async def test_the_database_holds_no_usable_link(
    mail_app: Any, mail_client: httpx.AsyncClient, smtp: SMTPTestServer
) -> None:
    token = await _reset_token(mail_app, mail_client, smtp)
    verifier = token.partition(".")[2]

    async with mail_app.state.security.stores.engine.connect() as conn:
        rows = (await conn.execute(sa.text("SELECT * FROM one_time_tokens"))).all()

    assert rows
    assert all(verifier not in str(row) for row in rows)


async def test_links_never_reach_events_or_logs(
    mail_app: Any,
    mail_client: httpx.AsyncClient,
    smtp: SMTPTestServer,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    with capture_events() as events:
        token = await _reset_token(mail_app, mail_client, smtp)
        await _reset(mail_client, token)
        await _reset(mail_client, token)  # refused: its event must not quote it either
        await mail_app.state.security.drain()
    printed = capsys.readouterr()

    verifier = token.partition(".")[2]
    assert events
    assert all(verifier not in repr(e) for e in events)
    assert verifier not in caplog.text
    assert verifier not in printed.out + printed.err


async def test_a_refused_link_answers_the_same_whatever_the_reason(
    mail_app: Any, mail_client: httpx.AsyncClient, smtp: SMTPTestServer
) -> None:
    used = await _reset_token(mail_app, mail_client, smtp)
    await _reset(mail_client, used)

    replay = await mail_client.post(
        "/auth/password/reset", json={"token": used, "new_password": NEW_PASSWORD + "x"}
    )
    unknown = await mail_client.post(
        "/auth/password/reset",
        json={"token": "unknownselector0.unknownverifier", "new_password": NEW_PASSWORD},
    )

    assert replay.status_code == unknown.status_code == 400
    assert without_request_id(replay.json()) == without_request_id(unknown.json())
