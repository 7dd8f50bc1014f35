"""Sessions.open after a proof that is not a password (a second factor, an OpenID Connect
sign-in): the same refusals of the account's state, the same conditional insert against
a change that commits meanwhile, and the same events as a password login. On memory,
SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from bastion.accounts import AccountService, LockedSignIn, Proof, TokenPair
from bastion.clock import FrozenClock
from bastion.errors import InvalidCredentialsError, InvalidTokenError
from bastion.events import RequestContext
from bastion.stores import Account, AccountChange, SecurityEvent, Stores
from bastion.testing import capture_events
from tests.contract.support import account_service, make_account

CONTEXT = RequestContext(ip_address="203.0.113.7", endpoint="/auth/oidc/callback", method="GET")
SECOND_FACTOR = Proof(("otp",))


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
async def service(stores: Stores, clock: FrozenClock) -> AsyncIterator[AccountService]:
    async with account_service(stores, clock, require_verified_email=True) as service:
        yield service


async def stored(stores: Stores, **overrides: Any) -> Account:
    account = make_account(**{"email": "owner@example.com", "email_verified": True, **overrides})
    await stores.accounts.add(account)
    return account


def of_type(events: list[SecurityEvent], event_type: str) -> list[SecurityEvent]:
    return [e for e in events if e.event_type == event_type]


async def live_sessions(service: AccountService, account: Account) -> list[Any]:
    return await service.stores.sessions.list_live(
        account.id, now=service.clock.now(), idle_ttl_seconds=service.sessions.idle_ttl_seconds
    )


async def test_a_second_factor_opens_a_session_the_requests_accept(
    service: AccountService, stores: Stores
) -> None:
    account = await stored(stores)

    with capture_events() as events:
        pair = await service.sessions.open(
            account, SECOND_FACTOR, context=CONTEXT, user_agent="phone"
        )

    principal = await service.authenticator.authenticate(pair.access_token)
    assert principal.user_id == account.id
    assert principal.session_id == pair.session_id
    assert await service.sessions.session_of_refresh_token(pair.refresh_token) == pair.session_id
    [success] = of_type(events, "auth_success")
    assert success.user_id == str(account.id)
    assert success.ip_address == CONTEXT.ip_address
    assert success.extra["outcome"] == "success"
    assert success.extra["amr"] == ["otp"]
    assert of_type(events, "auth_failure") == []


async def test_the_session_it_opens_rotates_like_a_password_logins(
    service: AccountService, stores: Stores
) -> None:
    account = await stored(stores)
    pair = await service.sessions.open(account, Proof(("oidc",)), context=CONTEXT, user_agent=None)

    rotated = await service.sessions.rotate(pair.refresh_token, context=CONTEXT, user_agent=None)

    assert rotated.session_id == pair.session_id
    assert rotated.refresh_token != pair.refresh_token


@pytest.mark.parametrize(
    ("state", "reason", "outcome"),
    [
        ({"is_active": False}, "account disabled", "disabled"),
        ({"locked_at": datetime(2024, 5, 2, tzinfo=UTC)}, "account locked", "locked"),
        ({"email_verified": False}, "email not verified", "unverified"),
    ],
    ids=["disabled", "locked", "unverified"],
)
async def test_no_proof_opens_a_session_for_an_account_in_that_state(
    service: AccountService,
    stores: Stores,
    state: dict[str, Any],
    reason: str,
    outcome: str,
) -> None:
    account = await stored(stores, **state)

    with capture_events() as events, pytest.raises(InvalidCredentialsError) as refused:
        await service.sessions.open(account, SECOND_FACTOR, context=CONTEXT, user_agent=None)

    assert refused.value.reason == reason
    assert await live_sessions(service, account) == []
    [failure] = of_type(events, "auth_failure")
    assert failure.user_id == str(account.id)
    assert failure.details == reason
    assert failure.extra["outcome"] == outcome
    assert of_type(events, "auth_success") == []


async def test_only_a_proof_that_passes_the_lock_opens_a_locked_account(
    service: AccountService, stores: Stores
) -> None:
    account = await stored(stores, locked_at=datetime(2024, 5, 2, tzinfo=UTC))

    pair = await service.sessions.open(
        account, Proof(("pwd",), passes_lock=True), context=CONTEXT, user_agent=None
    )

    assert (await service.authenticator.authenticate(pair.access_token)).user_id == account.id


async def test_a_password_change_while_the_proof_was_checked_refuses_the_session(
    service: AccountService, stores: Stores
) -> None:
    # The account as the sign-in read it before checking its proof.
    read = await stored(stores)
    await service.admin.apply(
        read.id,
        AccountChange(password_hash="$argon2id$new", revoke_sessions=True, reason="reset"),
        lambda before, after: [],
    )

    with capture_events() as events, pytest.raises(InvalidCredentialsError):
        await service.sessions.open(read, SECOND_FACTOR, context=CONTEXT, user_agent=None)

    assert await live_sessions(service, read) == []
    [failure] = of_type(events, "auth_failure")
    assert failure.details.startswith("account changed during the login")
    assert of_type(events, "auth_success") == []


async def test_racing_a_password_change_leaves_no_usable_session(
    service: AccountService, stores: Stores
) -> None:
    """Whichever commits first, a proof checked against the old state ends with nothing
    usable: no session opens, or the change revokes the one that did."""
    for attempt in range(5):
        read = await stored(stores, email=f"race{attempt}@example.com")
        opening = service.sessions.open(read, SECOND_FACTOR, context=CONTEXT, user_agent=None)
        change = service.admin.apply(
            read.id,
            AccountChange(password_hash="$argon2id$new", revoke_sessions=True, reason="reset"),
            lambda before, after: [],
        )

        opened, _ = await asyncio.gather(opening, change, return_exceptions=True)

        assert await live_sessions(service, read) == []
        if isinstance(opened, TokenPair):
            with pytest.raises(InvalidTokenError):
                await service.authenticator.authenticate(opened.access_token)
        else:
            assert isinstance(opened, InvalidCredentialsError)


async def test_the_password_login_opens_through_the_same_door(
    service: AccountService, stores: Stores
) -> None:
    """A password login is one proof among others: ``amr`` says which."""
    password = "correct horse battery staple 42"
    await service.login.register("signer@example.com", password, email_verified=True)

    with capture_events() as events:
        pair = await service.login.sign_in(
            "signer@example.com", password, context=CONTEXT, user_agent=None
        )

    [success] = of_type(events, "auth_success")
    assert success.extra["amr"] == ["pwd"]
    assert (
        await service.authenticator.authenticate(pair.access_token)
    ).session_id == pair.session_id


async def test_the_right_password_on_a_locked_account_tells_the_hooks_and_opens_nothing(
    service: AccountService, stores: Stores
) -> None:
    """A hook that fails is logged: the next hook still runs and the answer stays that of
    a wrong password, so the hooks cannot tell a guesser that the guess was right."""
    password = "correct horse battery staple 42"
    account = await service.login.register("locked@example.com", password, email_verified=True)
    assert account is not None
    await service.admin.apply(
        account.id,
        AccountChange(locked=True, bump_token_version=False, reason="failed logins"),
        lambda before, after: [],
    )
    told: list[LockedSignIn] = []

    async def failing(event: LockedSignIn) -> None:
        raise RuntimeError("the mail queue is gone")

    async def recording(event: LockedSignIn) -> None:
        told.append(event)

    service.login.on_locked_sign_in(failing)
    service.login.on_locked_sign_in(recording)

    with pytest.raises(InvalidCredentialsError) as right:
        await service.login.sign_in(
            "locked@example.com", password, context=CONTEXT, user_agent=None
        )
    with pytest.raises(InvalidCredentialsError) as wrong:
        await service.login.sign_in(
            "locked@example.com", "not it", context=CONTEXT, user_agent=None
        )

    assert [(e.account.id, e.context) for e in told] == [(account.id, CONTEXT)]
    assert (right.value.retry_after, right.value.challenge) == (0, None)
    assert (wrong.value.retry_after, wrong.value.challenge) == (0, None)
    assert await live_sessions(service, account) == []
