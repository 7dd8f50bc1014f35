"""Attack: take over an account through an external sign-in provider (API.md; the
"pre-account-hijacking" and unverified-email linking that Keycloak and Auth0 refuse): a
provider identity whose address is an existing account's links only when the provider
and the account have both verified it; an identity linked once signs in to its account
whatever its address says later; another account's identity cannot be linked; the last
way to sign in cannot be unlinked. On memory, SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bastion.accounts import AccountService, LastSignInMethodError
from bastion.clock import FrozenClock
from bastion.errors import OAuthFailedError
from bastion.events import EventLog, RequestContext
from bastion.oidc import ExternalIdentity
from bastion.passwords import TEST_ONLY_INSECURE, PasswordHasher, PasswordPolicy
from bastion.stores import Account, ExternalLink, Stores
from bastion.testing import capture_events
from bastion.tokens import AccessTokens, KeySet
from tests.contract.support import make_account

CONTEXT = RequestContext(ip_address="203.0.113.7", endpoint="/auth/oauth/corp/callback")


@pytest.fixture
async def service(stores: Stores) -> AsyncIterator[AccountService]:
    clock = FrozenClock(datetime.now(UTC).replace(microsecond=0))
    events = EventLog(clock=clock)
    yield AccountService(
        stores,
        hasher=PasswordHasher(TEST_ONLY_INSECURE),
        policy=PasswordPolicy(),
        access_tokens=AccessTokens(
            KeySet.generate(clock=clock),
            issuer="https://bastion.test",
            audience="bastion-api",
            ttl=timedelta(minutes=15),
            clock=clock,
        ),
        events=events,
        clock=clock,
    )
    await events.drain()


def identity(**changes: Any) -> ExternalIdentity:
    values: dict[str, Any] = {
        "provider": "corp",
        "subject": "alice-at-corp",
        "email": "alice@example.com",
        "email_verified": True,
        "name": "Alice",
        "amr": ("ext:corp",),
    } | changes
    return ExternalIdentity(**values)


async def stored(stores: Stores, **overrides: Any) -> Account:
    account = make_account(**{"email": "alice@example.com", "email_verified": True, **overrides})
    await stores.accounts.add(account)
    return account


async def signed_in_as(service: AccountService, who: ExternalIdentity) -> str:
    pair = await service.external.sign_in(who, context=CONTEXT, user_agent="browser")
    principal = await service.authenticator.authenticate(pair.access_token)
    return str(principal.user_id)


async def test_a_first_sign_in_creates_an_account_without_a_password(
    service: AccountService, stores: Stores
) -> None:
    with capture_events() as events:
        user_id = await signed_in_as(service, identity())

    account = await stores.accounts.get_by_email("alice@example.com")
    assert account is not None
    assert str(account.id) == user_id
    assert (account.password_hash, account.email_verified) == (None, True)
    assert account.display_name == "Alice"
    assert [link.provider for link in await stores.links.of_user(account.id)] == ["corp"]
    success = [e for e in events if e.event_type == "auth_success"]
    assert success[0].extra.get("amr") == ["ext:corp"]
    assert await signed_in_as(service, identity()) == user_id  # the same account again


@pytest.mark.parametrize(
    ("provider_verified", "account_verified"), [(False, True), (True, False), (False, False)]
)
async def test_an_address_not_verified_on_both_sides_links_nothing(
    service: AccountService, stores: Stores, provider_verified: bool, account_verified: bool
) -> None:
    victim = await stored(stores, email_verified=account_verified)

    with pytest.raises(OAuthFailedError, match="has an account"):
        await service.external.sign_in(
            identity(email_verified=provider_verified), context=CONTEXT, user_agent=None
        )

    assert await stores.links.of_user(victim.id) == []
    assert await stores.links.find("corp", "alice-at-corp") is None


async def test_an_address_verified_on_both_sides_links_to_its_account(
    service: AccountService, stores: Stores
) -> None:
    owner = await stored(stores)

    with capture_events() as events:
        user_id = await signed_in_as(service, identity())

    assert user_id == str(owner.id)
    assert [e.event_type for e in events if e.event_type == "account_linked"] == ["account_linked"]


async def test_a_linked_identity_keeps_its_account_whatever_its_address_says_later(
    service: AccountService, stores: Stores
) -> None:
    first = await signed_in_as(service, identity())
    await stored(stores, email="mallory@example.com")

    # The provider now asserts another account's verified address for the same identity.
    again = await signed_in_as(service, identity(email="mallory@example.com"))

    assert again == first


async def test_an_identity_of_another_account_cannot_be_linked(
    service: AccountService, stores: Stores
) -> None:
    await signed_in_as(service, identity())
    other = await stored(stores, email="bob@example.com")

    with pytest.raises(OAuthFailedError, match="linked already"):  # alice's identity
        await service.external.link(other.id, identity(), context=CONTEXT)
    await service.external.link(other.id, identity(subject="bob-2"), context=CONTEXT)
    with pytest.raises(OAuthFailedError, match="linked already"):  # one per provider
        await service.external.link(other.id, identity(subject="bob-3"), context=CONTEXT)
    assert await service.external.providers_of(other.id) == ["corp"]
    assert (await stores.links.find("corp", "bob-2")) is not None


async def test_a_provider_that_names_no_address_signs_in_to_no_new_account(
    service: AccountService, stores: Stores
) -> None:
    for nameless in (identity(email=None), identity(email="not an address")):
        with pytest.raises(OAuthFailedError):
            await service.external.sign_in(nameless, context=CONTEXT, user_agent=None)

    assert await stores.links.find("corp", "alice-at-corp") is None


async def test_the_last_way_to_sign_in_cannot_be_unlinked(
    service: AccountService, stores: Stores
) -> None:
    user_id = await signed_in_as(service, identity())
    account = await stores.accounts.get_by_email("alice@example.com")
    assert account is not None

    with pytest.raises(LastSignInMethodError):
        await service.external.unlink(account.id, "corp", context=CONTEXT)
    await service.external.link(account.id, identity(provider="gh", subject="9"), context=CONTEXT)
    assert await service.external.unlink(account.id, "corp", context=CONTEXT) is True
    assert await service.external.unlink(account.id, "corp", context=CONTEXT) is False
    assert await service.external.providers_of(account.id) == ["gh"]
    assert user_id == str(account.id)


async def test_a_disabled_account_is_not_signed_in(service: AccountService, stores: Stores) -> None:
    owner = await stored(stores, is_active=False)
    await stores.links.add(ExternalLink("corp", "alice-at-corp", owner.id, None, datetime.now(UTC)))

    with pytest.raises(OAuthFailedError, match="may not sign in"):
        await service.external.sign_in(identity(), context=CONTEXT, user_agent=None)
