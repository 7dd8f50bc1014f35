"""One-time link tokens on memory, SQLite and PostgreSQL: issued as digests, spent once in
the transaction of their change, bound to the account state, replaced by newer ones."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from bastion.clock import FrozenClock
from bastion.errors import InvalidLinkError
from bastion.stores import Account, AccountChange, SecurityEvent, Stores
from bastion.tokens.onetime import OneTimeTokens, Purpose
from tests.contract.support import make_account

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def _no_events(before: Account, after: Account) -> Sequence[SecurityEvent]:
    return []


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(NOW)


@pytest.fixture
def tokens(stores: Stores, clock: FrozenClock) -> OneTimeTokens:
    return OneTimeTokens(stores.tokens, clock=clock)


@pytest.fixture
async def alice(stores: Stores) -> Account:
    account = make_account("alice@example.com")
    await stores.accounts.add(account)
    return account


async def _spend(
    stores: Stores, tokens: OneTimeTokens, token: str, purpose: Purpose, **change: object
) -> Account:
    found, use = await tokens.check(token, purpose)
    return await stores.accounts.change(
        found.user_id,
        AccountChange(use_token=use, bump_token_version=False, **change),  # type: ignore[arg-type]
        now=NOW,
        events=_no_events,
    )


async def test_a_token_is_stored_only_as_a_digest(
    stores: Stores, tokens: OneTimeTokens, alice: Account
) -> None:
    token = await tokens.issue(alice, "password-reset")
    selector, _, verifier = token.partition(".")

    stored = await stores.tokens.get(selector)

    assert stored is not None
    assert verifier not in repr(stored)
    assert len(stored.digest) == 64
    assert len(verifier) >= 43  # 256 bits, URL-safe base64


async def test_a_token_changes_the_account_once(
    stores: Stores, tokens: OneTimeTokens, alice: Account
) -> None:
    token = await tokens.issue(alice, "verify-email")

    changed = await _spend(stores, tokens, token, "verify-email", email_verified=True)

    assert changed.email_verified is True
    with pytest.raises(InvalidLinkError):
        await _spend(stores, tokens, token, "verify-email", email_verified=True)


async def test_a_failed_change_leaves_the_token_unspent(
    stores: Stores, tokens: OneTimeTokens, alice: Account
) -> None:
    token = await tokens.issue(alice, "password-reset")
    _, use = await tokens.check(token, "password-reset")

    with pytest.raises(InvalidLinkError):
        # The state check fails inside the change: nothing of it is written.
        await stores.accounts.change(
            alice.id,
            AccountChange(
                use_token=type(use)(use.selector, use.purpose, lambda account: "other state"),
                password_hash="$argon2id$new",
            ),
            now=NOW,
            events=_no_events,
        )
    after = await stores.accounts.get(alice.id)
    spent = await _spend(stores, tokens, token, "password-reset", password_hash="$argon2id$2")

    assert after is not None
    assert after.password_hash == alice.password_hash
    assert spent.password_hash == "$argon2id$2"


async def test_a_changed_password_kills_the_reset_token(
    stores: Stores, tokens: OneTimeTokens, alice: Account
) -> None:
    token = await tokens.issue(alice, "password-reset")
    await stores.accounts.update(alice.id, password_hash="$argon2id$changed-elsewhere")

    with pytest.raises(InvalidLinkError):
        await _spend(stores, tokens, token, "password-reset", password_hash="$argon2id$x")


async def test_a_newer_token_replaces_the_older(
    stores: Stores, tokens: OneTimeTokens, alice: Account
) -> None:
    older = await tokens.issue(alice, "password-reset")
    newer = await tokens.issue(alice, "password-reset")

    with pytest.raises(InvalidLinkError):
        await tokens.check(older, "password-reset")
    found, _ = await tokens.check(newer, "password-reset")
    assert found.user_id == alice.id


async def test_tokens_of_other_purposes_survive_a_new_one(
    stores: Stores, tokens: OneTimeTokens, alice: Account
) -> None:
    verify = await tokens.issue(alice, "verify-email")
    await tokens.issue(alice, "password-reset")

    found, _ = await tokens.check(verify, "verify-email")

    assert found.purpose == "verify-email"


async def test_an_expired_token_is_refused(
    stores: Stores, tokens: OneTimeTokens, alice: Account, clock: FrozenClock
) -> None:
    token = await tokens.issue(alice, "password-reset")

    clock.advance(timedelta(minutes=30).total_seconds())

    with pytest.raises(InvalidLinkError, match="expired"):
        await tokens.check(token, "password-reset")


async def test_a_token_of_another_purpose_is_refused(
    stores: Stores, tokens: OneTimeTokens, alice: Account
) -> None:
    token = await tokens.issue(alice, "verify-email")

    with pytest.raises(InvalidLinkError):
        await tokens.check(token, "password-reset")


async def test_a_wrong_verifier_is_refused(
    stores: Stores, tokens: OneTimeTokens, alice: Account
) -> None:
    bob = make_account("bob@example.com")
    await stores.accounts.add(bob)
    alices = await tokens.issue(alice, "password-reset")
    bobs = await tokens.issue(bob, "password-reset")

    spliced = f"{alices.partition('.')[0]}.{bobs.partition('.')[2]}"

    with pytest.raises(InvalidLinkError):
        await tokens.check(spliced, "password-reset")


@pytest.mark.parametrize("token", ["", "no-dot", ".", "abc.", ".abc", "x" * 200 + ".y"], ids=repr)
async def test_a_malformed_token_is_refused(tokens: OneTimeTokens, token: str) -> None:
    with pytest.raises(InvalidLinkError):
        await tokens.check(token, "verify-email")


async def test_a_token_spent_for_another_account_is_refused(
    stores: Stores, tokens: OneTimeTokens, alice: Account
) -> None:
    bob = make_account("bob@example.com")
    await stores.accounts.add(bob)
    token = await tokens.issue(alice, "password-reset")
    _, use = await tokens.check(token, "password-reset")

    with pytest.raises(InvalidLinkError):
        await stores.accounts.change(
            bob.id,
            AccountChange(use_token=use, password_hash="$argon2id$hijack"),
            now=NOW,
            events=_no_events,
        )
    untouched = await stores.accounts.get(bob.id)
    assert untouched is not None
    assert untouched.password_hash == bob.password_hash


async def test_concurrent_spends_of_one_token_succeed_once(
    stores: Stores, tokens: OneTimeTokens, alice: Account
) -> None:
    token = await tokens.issue(alice, "unlock")
    await stores.accounts.change(
        alice.id, AccountChange(locked=True, bump_token_version=False), now=NOW, events=_no_events
    )
    # The lock changed the state the token is bound to: issue it for the locked account.
    locked = await stores.accounts.get(alice.id)
    assert locked is not None
    token = await tokens.issue(locked, "unlock")

    results = await asyncio.gather(
        *(_spend(stores, tokens, token, "unlock", locked=False) for _ in range(5)),
        return_exceptions=True,
    )

    assert sum(isinstance(r, Account) for r in results) == 1
    assert all(isinstance(r, Account | InvalidLinkError) for r in results)
