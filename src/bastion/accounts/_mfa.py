"""The second factor: TOTP enrolment, the second step of a sign-in, recovery codes, and
turning it off (docs/mfa.md).

- Enrolment: ``setup`` makes a secret (sealed at rest) and shows it once, with its
  ``otpauth://`` URI and QR code; the factor is active only once ``confirm`` gets a
  right code from it, which answers the ten recovery codes, shown once.
- A sign-in of an account with the factor on stops after its first step
  (:meth:`Sessions.open` raises :class:`MFARequiredError` with an ``mfa_token``);
  ``verify`` takes the token and a code and opens the session.
- Codes: a TOTP code of the current step or one either side, accepted once on every
  instance (the step is claimed in the shared store), or an unused recovery code. A
  wrong code counts toward the account's code-guessing limit and, as a wrong password
  does, toward the login defence; an ``mfa_token`` takes five codes at most.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Literal, NoReturn, TypeVar

from bastion.accounts._hooks import Hook, Hooks
from bastion.accounts._password import PasswordLogin
from bastion.accounts._sessions import Sessions
from bastion.accounts._types import Principal, Proof, TokenPair
from bastion.clock import Clock
from bastion.errors import (
    ConflictError,
    InvalidCredentialsError,
    MFAFailedError,
    NotFoundError,
    RateLimitedError,
    WrongPasswordError,
)
from bastion.events import EventLog, RequestContext
from bastion.mfa import PERIOD, MFATokens, RecoveryCodes, SecretBox, TOTPCodes
from bastion.mfa._sealed import SealedSecretError
from bastion.stores import Account, Stores, TOTPFactor
from bastion.throttle import Check, Limiter, Policy

__all__ = ["Enrolment", "MFAChanged", "SecondFactor"]

T = TypeVar("T")
_CODES_PER_TOKEN = 5  # API.md: an mfa_token takes at most five codes
# A step's code is good from the step before it to the step after: claimed that long.
_STEP_CLAIM_SECONDS = 3 * PERIOD + 30


@dataclass(frozen=True)
class Enrolment:
    """A pending TOTP factor, shown once: the secret, its URI and its QR code (SVG)."""

    secret: str = dataclasses.field(repr=False)
    otpauth_uri: str = dataclasses.field(repr=False)
    qr_svg: str = dataclasses.field(repr=False)


@dataclass(frozen=True)
class _Found:
    """A code matched, before it is spent: a TOTP step, or a recovery code's digest."""

    kind: Literal["otp", "rec"]
    step: int = 0
    digest: str = ""


@dataclass(frozen=True)
class MFAChanged:
    """The account's second factor changed: its owner gets a notice."""

    account: Account
    change: Literal["enabled", "disabled", "reset", "recovery-code-used", "recovery-codes-replaced"]
    context: RequestContext


class SecondFactor:
    def __init__(
        self,
        stores: Stores,
        events: EventLog,
        clock: Clock,
        *,
        sessions: Sessions,
        login: PasswordLogin,
        totp: TOTPCodes,
        box: SecretBox,
        recovery: RecoveryCodes,
        tokens: MFATokens,
        claim: Callable[[str, int], Awaitable[bool]],
        limiter: Limiter | None = None,
        policies: Mapping[str, Policy] | None = None,
    ) -> None:
        """``claim(value, ttl)`` is True the first time ``value`` is claimed within
        ``ttl`` seconds, on every instance (the login defence's shared store);
        ``limiter`` with ``policies["mfa"]`` limits code guesses per account."""
        self._stores = stores
        self._events = events
        self._clock = clock
        self._sessions = sessions
        self._login = login
        self._totp = totp
        self._box = box
        self._recovery = recovery
        self._tokens = tokens
        self._claim = claim
        self._limiter = limiter
        self._policies = policies or {}
        self._changed: Hooks[MFAChanged] = Hooks("a second factor change")
        sessions.challenge = self._challenge

    def on_changed(self, hook: Hook[MFAChanged]) -> None:
        self._changed.add(hook)

    # -- enrolment ---------------------------------------------------------------------

    async def setup(self, principal: Principal) -> Enrolment:
        """Start (or start again) enrolling a TOTP factor.

        Raises:
            ConflictError: the account has an active factor (disable it first).
        """
        account = await self._account(principal.user_id)
        if account.mfa_enabled:
            raise ConflictError("a second factor is on already")
        secret = self._totp.new_secret()
        sealed = self._box.seal(secret, bound_to=str(account.id))
        if not await self._stores.mfa.begin(TOTPFactor(account.id, sealed, self._clock.now())):
            raise ConflictError("a second factor is on already")
        uri = self._totp.uri(secret, account.email)
        return Enrolment(secret, uri, self._totp.qr_svg(uri))

    async def confirm(
        self, principal: Principal, code: str, *, context: RequestContext
    ) -> list[str]:
        """Turn the pending factor on with a right code from it; the recovery codes,
        shown this once.

        Raises:
            MFAFailedError: no pending factor, or a wrong or used code.
            RateLimitedError: too many codes tried for this account.
        """
        account = await self._account(principal.user_id)
        factor = await self._stores.mfa.factor(account.id)
        if factor is None or factor.confirmed_at is not None:
            raise MFAFailedError("no factor to confirm")
        await self._take_guess(account, context)

        async def confirming() -> None:
            if not await self._totp_matches(account, factor, code, context):
                await self._failed(account, context, "wrong code confirming the factor")

        await self._counted(account, context, confirming())
        codes, digests = self._new_codes(account)
        now = self._clock.now()
        if not await self._stores.mfa.confirm(
            account.id, secret=factor.secret, now=now, recovery_digests=digests
        ):
            raise MFAFailedError("the factor was set up again meanwhile")
        await self._events.emit(
            "mfa_enabled", context=context, user_id=str(account.id), details="TOTP"
        )
        await self._changed.run(MFAChanged(account, "enabled", context))
        return codes

    async def disable(
        self, principal: Principal, password: str, code: str, *, context: RequestContext
    ) -> None:
        """Turn the factor off, with the password and a code (TOTP or recovery).

        Raises:
            ConflictError: the factor is not on.
            WrongPasswordError: the password is wrong.
            MFAFailedError: the code is wrong or used.
            RateLimitedError: too many codes tried for this account.
        """
        account = await self._account(principal.user_id)
        if not account.mfa_enabled:
            raise ConflictError("no second factor is on")
        await self._take_guess(account, context)
        if not await self._login.hasher.verify(account.password_hash, password):
            await self._events.emit(
                "mfa_failed",
                context=context,
                user_id=str(account.id),
                details="wrong password turning the second factor off",
            )
            raise WrongPasswordError("wrong password")
        await self._counted(account, context, self.check_code(account, code, context=context))
        await self._stores.mfa.remove(account.id)
        await self._events.emit(
            "mfa_disabled",
            context=context,
            user_id=str(account.id),
            details="turned off by the account's owner",
        )
        await self._changed.run(MFAChanged(account, "disabled", context))

    async def reset(self, user_id: uuid.UUID, *, context: RequestContext, by: str) -> bool:
        """Turn the account's factor off for its owner who lost it (an operator, after
        checking who asks); False when none was on.

        Raises:
            NotFoundError: no such account.
        """
        account = await self._account(user_id)
        removed = await self._stores.mfa.remove(user_id)
        if not removed and not account.mfa_enabled:
            return False
        await self._events.emit(
            "mfa_disabled", context=context, user_id=str(user_id), details=f"reset by {by}"
        )
        await self._changed.run(MFAChanged(account, "reset", context))
        return True

    async def recovery_codes_left(self, user_id: uuid.UUID) -> int:
        return await self._stores.mfa.recovery_codes_left(user_id)

    async def new_recovery_codes(
        self, principal: Principal, *, context: RequestContext
    ) -> list[str]:
        """Ten new recovery codes, shown this once; the old ones stop working.

        Raises:
            ConflictError: no second factor is on.
        """
        account = await self._account(principal.user_id)
        if not account.mfa_enabled:
            raise ConflictError("no second factor is on")
        codes, digests = self._new_codes(account)
        await self._stores.mfa.replace_recovery_codes(account.id, digests)
        await self._events.emit(
            "recovery_codes_replaced",
            context=context,
            user_id=str(account.id),
            details="ten new recovery codes; the old ones no longer work",
        )
        await self._changed.run(MFAChanged(account, "recovery-codes-replaced", context))
        return codes

    async def reauthenticate(
        self,
        principal: Principal,
        password: str,
        code: str | None,
        *,
        context: RequestContext,
        user_agent: str | None,
    ) -> TokenPair:
        """A fresh proof of identity for step-up: the password, and a code when the
        second factor is on. The caller's session is replaced by a new one whose tokens
        carry a fresh ``auth_time``.

        Raises:
            WrongPasswordError: the password is wrong.
            MFAFailedError: the code is missing, wrong or used.
            RateLimitedError: too many attempts for this account.
            InvalidCredentialsError: the account may not sign in (locked, disabled).
        """
        account = await self._account(principal.user_id)
        await self._take("password-change", f"user:{account.id}", account, context)
        refusal = self._sessions.refusal(account, Proof(("pwd",)))
        if refusal:
            # A locked (or disabled) account answers alike whatever the password: the
            # lock stops guessing, from a session too.
            await self._events.emit(
                "auth_failure",
                context=context,
                user_id=str(account.id),
                details=f"re-authentication refused ({refusal})",
            )
            raise InvalidCredentialsError(refusal)
        if not await self._login.hasher.verify(account.password_hash, password):
            await self._events.emit(
                "auth_failure",
                context=context,
                user_id=str(account.id),
                details="wrong password re-authenticating",
            )
            await self._login.second_step_failed(account, context, None)  # as a login's
            raise WrongPasswordError("wrong password")
        amr = ["pwd"]
        if account.mfa_enabled:
            if not code:
                await self._failed(account, context, "no code re-authenticating")
            await self._take_guess(account, context)
            checked = self.check_code(account, code or "", context=context)
            amr.append(await self._counted(account, context, checked))
        proof = Proof(amr=tuple(amr), details="re-authenticated", second_factor=account.mfa_enabled)
        pair = await self._sessions.open(account, proof, context=context, user_agent=user_agent)
        await self._sessions.replace(principal, context=context)
        await self._events.emit(
            "step_up", context=context, user_id=str(account.id), details=" ".join(amr)
        )
        return pair

    # -- the second step ---------------------------------------------------------------

    def _challenge(
        self, account: Account, proof: Proof, context: RequestContext, user_agent: str | None
    ) -> str:
        return self._tokens.issue(
            user_id=str(account.id),
            token_version=account.token_version,
            password_hash=account.password_hash,
            amr=proof.amr,
            passes_lock=proof.passes_lock,
            client=MFATokens.client_of(context.ip_address, user_agent),
        )

    async def verify(
        self,
        mfa_token: str,
        code: str,
        *,
        context: RequestContext,
        user_agent: str | None,
        device_cookie: str | None = None,
    ) -> TokenPair:
        """Complete a sign-in: ``mfa_token`` from its first step, ``code`` the second
        factor; the session's token pair (with the login defence's device cookie).

        In this order, so that nothing is spent for a sign-in that cannot happen: the
        token (valid, this client's, an attempt left), the account (unchanged since, and
        allowed to sign in: else the same refusal as a wrong code), the code (matched,
        not yet spent), the token claimed (it works once: of two at once, one goes on),
        then the code spent and the session opened.

        Raises:
            MFAFailedError: the token is invalid, expired, used, of another client, out
                of attempts, or the account changed or may not sign in; the code is
                wrong or used.
            RateLimitedError: too many codes tried for this account.
        """
        client = MFATokens.client_of(context.ip_address, user_agent)
        claims = self._tokens.read(mfa_token, client=client)
        if claims is None:
            await self._refused(context, None, "mfa_token invalid, expired or of another client")
        if not await self._an_attempt_left(claims.nonce):
            await self._refused(context, claims.user_id, "mfa_token out of attempts")
        try:
            account = await self._stores.accounts.get(uuid.UUID(claims.user_id))
        except ValueError:
            account = None
        if (
            account is None
            or not account.mfa_enabled
            or account.token_version != claims.token_version
            or MFATokens.credential_of(account.password_hash) != claims.credential
        ):
            await self._refused(context, claims.user_id, "the account changed since its sign-in")
        proof = Proof(
            amr=claims.amr,
            passes_lock=claims.passes_lock,
            details="signed in with a second factor",
            second_factor=True,
        )
        refusal = self._sessions.refusal(account, proof)
        if refusal:
            await self._failed(account, context, f"the account may not sign in ({refusal})")
        await self._take_guess(account, context)
        found = await self._counted(
            account, context, self._match(account, code, context), device_cookie
        )
        ttl = int(self._tokens.ttl.total_seconds())
        if not await self._claim(f"mfa-used:{claims.nonce}", ttl):
            await self._failed(account, context, "mfa_token used")
        method = await self._spend(account, found, context)
        proof = dataclasses.replace(proof, amr=(*claims.amr, method))
        pair = await self._sessions.open(account, proof, context=context, user_agent=user_agent)
        device = await self._login.second_step_succeeded(account, context, device_cookie)
        return dataclasses.replace(pair, device_token=device)

    async def check_code(self, account: Account, code: str, *, context: RequestContext) -> str:
        """Check and spend a code of ``account``'s active factor: ``"otp"`` for a TOTP
        code (its step now used), ``"rec"`` for a recovery code (now spent).

        Raises:
            MFAFailedError: no active factor, a wrong code, or one used before.
        """
        return await self._spend(account, await self._match(account, code, context), context)

    async def _match(self, account: Account, code: str, context: RequestContext) -> _Found:
        """Which of the factor's codes ``code`` is, nothing spent yet.

        Raises:
            MFAFailedError: no active factor, or no code of it.
        """
        factor = await self._stores.mfa.factor(account.id)
        if factor is None or factor.confirmed_at is None:
            await self._failed(account, context, "no second factor is on")
        step = self._totp.matching_step(
            await self._secret(account, factor, context), code, self._clock.now()
        )
        if step is not None:
            return _Found("otp", step=step)
        if self._recovery.looks_like(code):
            digest = self._recovery.digest(code, user_id=str(account.id))
            if await self._stores.mfa.has_recovery_code(account.id, digest):
                return _Found("rec", digest=digest)
        await self._failed(account, context, "wrong code")

    async def _spend(self, account: Account, found: _Found, context: RequestContext) -> str:
        """Use the code up: a TOTP step is claimed on every instance, a recovery code
        marked used; one used meanwhile (a replay, a race) is refused.

        Raises:
            MFAFailedError: the code was used before.
        """
        if found.kind == "otp":
            if not await self._claim(f"totp:{account.id}:{found.step}", _STEP_CLAIM_SECONDS):
                await self._failed(account, context, "a code used before (replayed)")
            return "otp"
        if not await self._stores.mfa.use_recovery_code(
            account.id, found.digest, now=self._clock.now()
        ):
            await self._failed(account, context, "a recovery code used before")
        left = await self._stores.mfa.recovery_codes_left(account.id)
        await self._events.emit(
            "recovery_code_used",
            context=context,
            user_id=str(account.id),
            details=f"{left} recovery codes left",
        )
        await self._changed.run(MFAChanged(account, "recovery-code-used", context))
        return "rec"

    # -- parts -------------------------------------------------------------------------

    async def _secret(self, account: Account, factor: TOTPFactor, context: RequestContext) -> str:
        """The factor's TOTP secret, unsealed; one that does not open fails closed."""
        try:
            return self._box.open(factor.secret, bound_to=str(account.id))
        except SealedSecretError:
            # Tampered with, or sealed under another key: fail closed, and say so.
            await self._events.emit(
                "mfa_failed",
                context=context,
                user_id=str(account.id),
                details="the stored TOTP secret does not open",
                severity="critical",
            )
            raise MFAFailedError("sealed secret does not open") from None

    async def _totp_matches(
        self, account: Account, factor: TOTPFactor, code: str, context: RequestContext
    ) -> bool:
        """Whether ``code`` is the (pending) factor's for now; its step is then claimed,
        so the code is refused for the rest of its life, on every instance."""
        step = self._totp.matching_step(
            await self._secret(account, factor, context), code, self._clock.now()
        )
        if step is None:
            return False
        await self._spend(account, _Found("otp", step=step), context)
        return True

    def _new_codes(self, account: Account) -> tuple[list[str], list[str]]:
        """Ten recovery codes, and their digests to store."""
        codes = self._recovery.new()
        return codes, [self._recovery.digest(c, user_id=str(account.id)) for c in codes]

    async def _counted(
        self,
        account: Account,
        context: RequestContext,
        check: Awaitable[T],
        device_cookie: str | None = None,
    ) -> T:
        """``check``'s result; a refused code counts as a failed login, as at sign-in."""
        try:
            return await check
        except MFAFailedError:
            await self._login.second_step_failed(account, context, device_cookie)
            raise

    async def _an_attempt_left(self, nonce: str) -> bool:
        ttl = int(self._tokens.ttl.total_seconds())
        for attempt in range(_CODES_PER_TOKEN):
            if await self._claim(f"mfa-try:{nonce}:{attempt}", ttl):
                return True
        return False

    async def _take_guess(self, account: Account, context: RequestContext) -> None:
        """One code guess of the account's limit (``mfa``), refused past it."""
        await self._take("mfa", f"mfa:{account.id}", account, context)

    async def _take(
        self, policy_name: str, key: str, account: Account, context: RequestContext
    ) -> None:
        policy = self._policies.get(policy_name)
        if self._limiter is None or policy is None:
            return
        verdict = await self._limiter.acquire([Check(policy, key)], offender=None)
        if not verdict.allowed:
            await self._events.emit(
                "rate_limit_exceeded",
                context=context,
                user_id=str(account.id),
                details=f"rate limit {policy_name} (per account) exceeded",
                violated_policies=list(verdict.violated),
                retry_after=verdict.retry_after,
            )
            raise RateLimitedError(f"{policy_name} limit", verdict=verdict)

    async def _failed(self, account: Account, context: RequestContext, reason: str) -> NoReturn:
        await self._refused(context, str(account.id), reason)

    async def _refused(self, context: RequestContext, user_id: str | None, reason: str) -> NoReturn:
        await self._events.emit("mfa_failed", context=context, user_id=user_id, details=reason)
        raise MFAFailedError(reason)

    async def _account(self, user_id: uuid.UUID) -> Account:
        account = await self._stores.accounts.get(user_id)
        if account is None:
            raise NotFoundError("no such account")
        return account
