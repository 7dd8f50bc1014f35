"""Accounts of identities at external sign-in providers: which account a provider's
identity signs in to, and linking and unlinking one from a signed-in account.

The rules that keep a provider from taking over an account (API.md; the account
takeover of "pre-hijacking" and unverified-email linking, as Keycloak and Auth0 refuse
it):

- an identity linked before signs in to its account, whatever its email says now;
- an identity seen for the first time links to the account of its email only when the
  provider asserts the address verified *and* the account verified it too, *and* the
  two are the same address character for character but for ASCII case (the accounts'
  uniqueness key case-folds and NFKC-normalizes, so ``alice@straße.de``, a Kelvin sign or
  full-width letters would otherwise reach another mailbox's account);
- otherwise, when the address has an account (or its account has a second factor,
  whose owner must pass it to link), nothing is linked and the sign-in is refused: the
  owner signs in locally and links from their account;
- otherwise a new account is created only for an address the provider verified (an
  unverified one would let whoever claims it first at a provider hold the account the
  owner later recovers by email), with no password (the owner sets one by a reset).

A link the owner asks for is completed only while the session that asked is live: a
stolen token cannot finish a link after the owner logged out or reset the password.
"""

from __future__ import annotations

import string
import unicodedata
import uuid
from typing import TYPE_CHECKING

from bastion.accounts._emails import InvalidEmailError, normalize_email
from bastion.accounts._sessions import Sessions
from bastion.accounts._types import Proof, TokenPair
from bastion.clock import Clock
from bastion.errors import ConflictError, InvalidCredentialsError, OAuthFailedError
from bastion.events import EventLog, RequestContext
from bastion.stores import Account, ExternalLink, Stores

if TYPE_CHECKING:
    from bastion.oidc import ExternalIdentity

__all__ = ["ExternalSignIns", "LastSignInMethodError", "same_address"]

_MAX_NAME = 100  # the accounts' display_name column
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


class LastSignInMethodError(ConflictError):
    """Unlinking would leave the account with no way to sign in (no password, no other
    provider)."""


def same_address(given: str, stored: str) -> bool:
    """Whether ``given`` (a provider's) is the stored address ``stored``: equal but for
    ASCII case, and already in NFKC form (a compatibility character, such as a Kelvin
    sign or full-width letters, is normalized into another address)."""
    if unicodedata.normalize("NFKC", given) != given:
        return False
    return given.translate(_ASCII_LOWER) == stored.translate(_ASCII_LOWER)


class ExternalSignIns:
    def __init__(self, stores: Stores, sessions: Sessions, events: EventLog, clock: Clock) -> None:
        self._stores = stores
        self._sessions = sessions
        self._events = events
        self._clock = clock

    async def sign_in(
        self, identity: ExternalIdentity, *, context: RequestContext, user_agent: str | None
    ) -> TokenPair:
        """Open a session on the account of ``identity`` (see the module's rules).

        Raises:
            OAuthFailedError: no account may be signed in to (its reason says why).
        """
        account = await self._account_for(identity, context)
        # A provider configured to vouch for a second factor (its amr) stands for one.
        proof = Proof(
            amr=(*identity.amr, "mfa") if identity.second_factor else identity.amr,
            details=f"signed in with {identity.provider}",
            second_factor=identity.second_factor,
        )
        try:
            return await self._sessions.open(account, proof, context=context, user_agent=user_agent)
        except InvalidCredentialsError as exc:
            raise OAuthFailedError(f"the account may not sign in ({exc.reason})") from None

    async def link(
        self,
        user_id: uuid.UUID,
        identity: ExternalIdentity,
        *,
        session_id: uuid.UUID,
        context: RequestContext,
    ) -> None:
        """Link ``identity`` to the account ``user_id``, whose owner asked for it in the
        session ``session_id``.

        Raises:
            OAuthFailedError: that session is no longer live, the account is disabled,
                the identity is another account's, or the account has an identity of
                that provider already.
        """
        session = await self._stores.sessions.get(session_id)
        now = self._clock.now()
        if (
            session is None
            or session.user_id != user_id
            or not session.is_live(now, self._sessions.idle_ttl_seconds)
        ):
            raise OAuthFailedError("the session that asked for the link has ended")
        account = await self._stores.accounts.get(user_id)
        if account is None or not account.is_active:
            raise OAuthFailedError("the account may not link")
        await self._add(user_id, identity)
        await self._events.emit(
            "account_linked",
            context=context,
            user_id=str(user_id),
            details=f"{identity.provider} linked by the account's owner",
        )

    async def unlink(self, user_id: uuid.UUID, provider: str, *, context: RequestContext) -> bool:
        """Unlink the account's identity at ``provider``; False when there was none.

        Raises:
            LastSignInMethodError: it is the account's only way to sign in.
        """
        links = await self._stores.links.of_user(user_id)
        if not any(link.provider == provider for link in links):
            return False
        account = await self._stores.accounts.get(user_id)
        if account is not None and account.password_hash is None and len(links) == 1:
            raise LastSignInMethodError("the last way to sign in to this account")
        removed = await self._stores.links.remove(user_id, provider)
        if removed:
            await self._events.emit(
                "account_unlinked", context=context, user_id=str(user_id), details=provider
            )
        return removed

    async def _add(self, user_id: uuid.UUID, identity: ExternalIdentity) -> None:
        try:
            await self._stores.links.add(self._link(user_id, identity))
        except ConflictError:
            raise OAuthFailedError("the identity or the provider is linked already") from None

    async def providers_of(self, user_id: uuid.UUID) -> list[str]:
        return [link.provider for link in await self._stores.links.of_user(user_id)]

    async def _account_for(self, identity: ExternalIdentity, context: RequestContext) -> Account:
        linked = await self._stores.links.find(identity.provider, identity.subject)
        if linked is not None:
            account = await self._stores.accounts.get(linked.user_id)
            if account is None:
                raise OAuthFailedError("the linked account is gone")
            return account
        if identity.email is None:
            raise OAuthFailedError("the provider named no email address")
        try:
            email, key = normalize_email(identity.email, new=True)
        except InvalidEmailError:
            raise OAuthFailedError("the provider's email address is not valid") from None
        existing = await self._stores.accounts.get_by_email(key)
        if existing is not None:
            if not (identity.email_verified and existing.email_verified):
                raise OAuthFailedError(
                    "the address has an account, and it or the provider has not verified it"
                )
            if not same_address(identity.email, existing.email):
                raise OAuthFailedError("the address has an account under another spelling")
            if existing.mfa_enabled:
                # Linking is a change that needs the second factor: the owner signs in
                # with it and links from the account (POST /auth/oauth/{name}/link).
                raise OAuthFailedError("the address's account has a second factor")
            await self._add(existing.id, identity)
            await self._events.emit(
                "account_linked",
                context=context,
                user_id=str(existing.id),
                details=f"{identity.provider} linked by a verified address",
            )
            return existing
        if not identity.email_verified:
            raise OAuthFailedError("the provider has not verified the address")
        return await self._create(identity, email, key, context)

    async def _create(
        self, identity: ExternalIdentity, email: str, key: str, context: RequestContext
    ) -> Account:
        now = self._clock.now()
        reserved = await self._stores.accounts.resolve_id(key, reserve=False)
        name = (identity.name or "").strip()[:_MAX_NAME] or None
        account = Account(
            id=reserved[0] if reserved else uuid.uuid4(),
            email=email,
            email_key=key,
            password_hash=None,  # set by the owner through a password reset
            display_name=name,
            email_verified=identity.email_verified,
            created_at=now,
            updated_at=now,
        )
        try:
            await self._stores.accounts.add(account)
        except ConflictError:  # registered meanwhile: the rules above apply next time
            raise OAuthFailedError("the address was registered meanwhile") from None
        await self._add(account.id, identity)
        await self._events.emit(
            "user_registered",
            context=context,
            user_id=str(account.id),
            details=f"by {identity.provider}",
        )
        return account

    def _link(self, user_id: uuid.UUID, identity: ExternalIdentity) -> ExternalLink:
        return ExternalLink(
            identity.provider, identity.subject, user_id, identity.email, self._clock.now()
        )
