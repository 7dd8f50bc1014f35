"""Attack: take over an account through an external sign-in provider (API.md; the
"pre-account-hijacking" and unverified-email linking that Keycloak and Auth0 refuse): a
provider identity whose address is an existing account's links only when the provider
and the account have both verified it; an identity linked once signs in to its account
whatever its address says later; another account's identity cannot be linked; the last
way to sign in cannot be unlinked. On memory, SQLite and PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from bastion.accounts import AccountService, LastSignInMethodError, Proof, normalize_email
from bastion.clock import FrozenClock
from bastion.errors import MFARequiredError, OAuthFailedError
from bastion.events import RequestContext
from bastion.oidc import ExternalIdentity
from bastion.stores import Account, ExternalLink, Stores, TOTPFactor
from bastion.testing import capture_events
from bastion.throttle import MemoryAttemptStore
from tests.contract.support import account_service, make_account

CONTEXT = RequestContext(ip_address="203.0.113.7", endpoint="/auth/oauth/corp/callback")


@pytest.fixture
async def service(stores: Stores) -> AsyncIterator[AccountService]:
    clock = FrozenClock(datetime.now(UTC).replace(microsecond=0))
    async with account_service(stores, clock) as service:
        yield service


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


async def live_session(service: AccountService, account: Account) -> uuid.UUID:
    """A session of ``account``'s owner, as one that asks for a link."""
    pair = await service.sessions.open(account, Proof(("pwd",)), context=CONTEXT, user_agent=None)
    return uuid.UUID(pair.session_id)


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

    session = await live_session(service, other)
    with pytest.raises(OAuthFailedError, match="linked already"):  # alice's identity
        await service.external.link(other.id, identity(), session_id=session, context=CONTEXT)
    await service.external.link(
        other.id, identity(subject="bob-2"), session_id=session, context=CONTEXT
    )
    with pytest.raises(OAuthFailedError, match="linked already"):  # one per provider
        await service.external.link(
            other.id, identity(subject="bob-3"), session_id=session, context=CONTEXT
        )
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
    await service.external.link(
        account.id,
        identity(provider="gh", subject="9"),
        session_id=await live_session(service, account),
        context=CONTEXT,
    )
    assert await service.external.unlink(account.id, "corp", context=CONTEXT) is True
    assert await service.external.unlink(account.id, "corp", context=CONTEXT) is False
    assert await service.external.providers_of(account.id) == ["gh"]
    assert user_id == str(account.id)


async def test_a_disabled_account_is_not_signed_in(service: AccountService, stores: Stores) -> None:
    owner = await stored(stores, is_active=False)
    await stores.links.add(ExternalLink("corp", "alice-at-corp", owner.id, None, datetime.now(UTC)))

    with pytest.raises(OAuthFailedError, match="may not sign in"):
        await service.external.sign_in(identity(), context=CONTEXT, user_agent=None)


async def test_an_address_the_provider_has_not_verified_creates_no_account(
    service: AccountService, stores: Stores
) -> None:
    # Whoever claims an address first at a careless provider must not hold its account
    # when the owner later recovers it by email.
    with pytest.raises(OAuthFailedError, match="not verified the address"):
        await service.external.sign_in(
            identity(email_verified=False), context=CONTEXT, user_agent=None
        )

    assert await stores.accounts.get_by_email("alice@example.com") is None
    assert await stores.links.find("corp", "alice-at-corp") is None


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("alice@straße.de", "alice@strasse.de"),  # another domain, the same key
        ("strauß@example.com", "strauss@example.com"),
        ("\u212aate@example.com", "kate@example.com"),  # a Kelvin sign
        ("\uff41lice@example.com", "alice@example.com"),  # a full-width letter
    ],
)
async def test_an_address_spelled_otherwise_links_to_no_account(
    service: AccountService, stores: Stores, given: str, stored: str
) -> None:
    victim = await stored_account(stores, stored)

    with pytest.raises(OAuthFailedError, match="another spelling"):
        await service.external.sign_in(identity(email=given), context=CONTEXT, user_agent=None)

    assert await stores.links.of_user(victim.id) == []


async def test_the_same_address_in_other_ascii_case_links(
    service: AccountService, stores: Stores
) -> None:
    owner = await stored_account(stores, "alice@example.com")

    assert await signed_in_as(service, identity(email="ALICE@Example.COM")) == str(owner.id)


async def test_a_link_is_not_completed_after_its_session_ended(
    service: AccountService, stores: Stores
) -> None:
    owner = await stored(stores, email="owner@example.com")
    session = await live_session(service, owner)
    await stores.sessions.revoke(session, now=service.clock.now(), reason="logout")

    with pytest.raises(OAuthFailedError, match="session that asked"):
        await service.external.link(owner.id, identity(), session_id=session, context=CONTEXT)
    other = await stored(stores, email="other@example.com")
    with pytest.raises(OAuthFailedError, match="session that asked"):  # another's session
        await service.external.link(
            owner.id, identity(), session_id=await live_session(service, other), context=CONTEXT
        )

    assert await stores.links.of_user(owner.id) == []


async def stored_account(stores: Stores, email: str) -> Account:
    email, key = normalize_email(email)
    account = make_account(email, email_key=key, email_verified=True)
    await stores.accounts.add(account)
    return account


async def test_a_provider_vouching_for_a_second_factor_stands_for_one(
    service: AccountService, stores: Stores
) -> None:
    service.use_second_factor(
        secrets=b"s" * 32,
        mfa_tokens=b"t" * 32,
        recovery_codes=b"r" * 32,
        claim=MemoryAttemptStore().claim,
    )
    account = await stored(stores)
    now = datetime.now(UTC)
    await stores.mfa.begin(TOTPFactor(account.id, "v1.sealed", now))
    assert await stores.mfa.confirm(account.id, secret="v1.sealed", now=now, recovery_digests=[])
    await stores.links.add(ExternalLink("corp", "alice-at-corp", account.id, None, now))

    with pytest.raises(MFARequiredError):
        await service.external.sign_in(identity(), context=CONTEXT, user_agent=None)
    pair = await service.external.sign_in(
        identity(second_factor=True), context=CONTEXT, user_agent=None
    )

    principal = await service.authenticator.authenticate(pair.access_token)
    assert principal.claims.amr == ("ext:corp", "mfa")
