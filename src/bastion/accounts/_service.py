"""The account parts, put together: :class:`AccountService` builds them from one set of
settings over the same stores, events and clock.

Callers use the parts: ``service.authenticator`` (:class:`Authenticator`, once per
request), ``service.sessions`` (:class:`Sessions`: open, rotate, revoke),
``service.login`` (:class:`PasswordLogin`: sign-up, login and its defence, lock, unlock)
and ``service.admin`` (:class:`AccountAdmin`: account records and changes).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING

from bastion.accounts._admin import AccountAdmin
from bastion.accounts._authenticator import Authenticator
from bastion.accounts._external import ExternalSignIns
from bastion.accounts._mfa import SecondFactor
from bastion.accounts._password import PasswordLogin
from bastion.accounts._principals import ExternalPrincipals
from bastion.accounts._sessions import Sessions
from bastion.accounts._types import BREACHED_REASON, ROLES, Principal, TokenPair
from bastion.clock import Clock, SystemClock
from bastion.events import EventLog
from bastion.mfa import MFATokens, RecoveryCodes, SecretBox, TOTPCodes
from bastion.passwords import BreachChecks, PasswordHasher, PasswordPolicy
from bastion.stores import Stores
from bastion.throttle import Limiter, LoginDefence, Policy
from bastion.tokens import AccessTokens

if TYPE_CHECKING:
    from bastion.oidc import ExternalTokens

__all__ = ["BREACHED_REASON", "ROLES", "AccountService", "Principal", "TokenPair"]


class AccountService:
    """The account parts over one set of stores, events and clock."""

    def __init__(
        self,
        stores: Stores,
        *,
        hasher: PasswordHasher,
        policy: PasswordPolicy,
        access_tokens: AccessTokens,
        events: EventLog,
        clock: Clock | None = None,
        refresh_idle_ttl: timedelta = timedelta(days=14),
        refresh_absolute_ttl: timedelta = timedelta(days=30),
        defence: LoginDefence | None = None,
        breached: BreachChecks | None = None,
        require_verified_email: bool = False,
    ) -> None:
        self._stores = stores
        self._events = events
        self._clock = clock or SystemClock()
        self.authenticator = Authenticator(stores, access_tokens, self._clock)
        self.admin = AccountAdmin(stores, events, self._clock, self.authenticator)
        self.sessions = Sessions(
            stores,
            events=events,
            clock=self._clock,
            access_tokens=access_tokens,
            authenticator=self.authenticator,
            admin=self.admin,
            idle_ttl=refresh_idle_ttl,
            absolute_ttl=refresh_absolute_ttl,
            require_verified_email=require_verified_email,
        )
        self.login = PasswordLogin(
            stores,
            events=events,
            clock=self._clock,
            hasher=hasher,
            policy=policy,
            sessions=self.sessions,
            admin=self.admin,
            defence=defence,
            breached=breached,
            require_verified_email=require_verified_email,
        )
        self.external = ExternalSignIns(stores, self.sessions, events, self._clock)
        # Resource-server mode, once accept_external_tokens() turned it on.
        self.external_principals: ExternalPrincipals | None = None
        # The second factor, once use_second_factor() set it up.
        self.mfa: SecondFactor | None = None

    def use_second_factor(
        self,
        *,
        secrets: bytes,
        mfa_tokens: bytes,
        recovery_codes: bytes,
        claim: Callable[[str, int], Awaitable[bool]],
        issuer: str = "Bastion",
        limiter: Limiter | None = None,
        policies: Mapping[str, Policy] | None = None,
    ) -> SecondFactor:
        """Turn on TOTP second factors: ``secrets`` seals the TOTP secrets, ``mfa_tokens``
        signs the second step's tokens, ``recovery_codes`` keys the codes' digests (three
        32-byte keys kept outside the database); ``claim`` is the shared store's
        claim-once (replayed codes, used tokens); ``issuer`` names the service in
        authenticator apps; ``limiter`` with ``policies["mfa"]`` limits code guesses."""
        self.mfa = SecondFactor(
            self._stores,
            self._events,
            self._clock,
            sessions=self.sessions,
            login=self.login,
            totp=TOTPCodes(issuer),
            box=SecretBox(secrets),
            recovery=RecoveryCodes(recovery_codes),
            tokens=MFATokens(mfa_tokens, clock=self._clock),
            claim=claim,
            limiter=limiter,
            policies=policies,
        )
        return self.mfa

    def accept_external_tokens(self, tokens: ExternalTokens) -> ExternalPrincipals:
        """Resource-server mode: the guard accepts the access tokens ``tokens`` verifies,
        as principals whose accounts are created on their first token."""
        principals = ExternalPrincipals(tokens, self._stores, self._events, self._clock)
        self.authenticator.first_sight = principals.first_sight
        self.external_principals = principals
        return principals

    @property
    def stores(self) -> Stores:
        return self._stores

    @property
    def events(self) -> EventLog:
        return self._events

    @property
    def clock(self) -> Clock:
        return self._clock
