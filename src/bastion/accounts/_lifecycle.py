"""The account flows around a login: email verification, password reset and change,
one's own sessions, the emailed unlock link, and the emailed sign-in link of a locked
account.

Every flow that starts from an email address (registration, forgotten password, a new
verification link) answers the same whatever the address: the request only takes a rate
limit and posts a background job; the job looks the account up, issues the token and
sends the message (OWASP Forgot Password Cheat Sheet: "return a consistent message for
both existent and non-existent accounts", "ensure that responses return in a consistent
amount of time"). One-time tokens are spent in the transaction of the change they
authorize (:mod:`bastion.tokens.onetime`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import uuid
from collections.abc import Callable
from typing import Final

from bastion.accounts._emails import normalize_email
from bastion.accounts._hooks import Hook, Hooks
from bastion.accounts._letters import Letters
from bastion.accounts._mfa import MFAChanged
from bastion.accounts._service import AccountService
from bastion.accounts._types import (
    AccountLocked,
    EmailVerified,
    LockedSignIn,
    Principal,
    TokenPair,
)
from bastion.errors import (
    InvalidLinkError,
    NotFoundError,
    PasswordPolicyError,
    RateLimitedError,
    WrongPasswordError,
)
from bastion.events import RequestContext
from bastion.mail import Message, Postman
from bastion.stores import Account, AccountChange, AuthSession, SecurityEvent, TokenUse
from bastion.throttle import Check, Limiter, Policy, StoreUnavailableError, Verdict
from bastion.tokens.onetime import OneTimeTokens, Purpose

__all__ = ["AccountLifecycle", "SessionView"]

_logger = logging.getLogger("bastion.accounts")
SAME_PASSWORD_REASON: Final = "The new password must differ from the current one."  # noqa: S105


class SessionView:
    """One session of the caller, as ``GET /auth/sessions`` lists it."""

    __slots__ = ("current", "session")

    def __init__(self, session: AuthSession, *, current: bool) -> None:
        self.session = session
        self.current = current


class AccountLifecycle:
    """Email verification, password reset and change, sessions, unlock links.

    ``limiter`` and ``policies`` (``password-reset-account``, ``password-change``,
    ``mail``) throttle per account; without a limiter nothing is throttled here (the
    per-IP route limits stay in the middleware).
    """

    def __init__(
        self,
        service: AccountService,
        tokens: OneTimeTokens,
        postman: Postman,
        letters: Letters,
        *,
        secret: bytes,
        limiter: Limiter | None = None,
        policies: dict[str, Policy] | None = None,
    ) -> None:
        self._service = service
        self._login = service.login
        self._sessions = service.sessions
        self._admin = service.admin
        self._stores = service.stores
        self._events = service.events
        self._tokens = tokens
        self._postman = postman
        self._letters = letters
        self._secret = secret
        self._limiter = limiter
        self._policies = policies or {}
        self._on_verified: Hooks[EmailVerified] = Hooks("email verified")
        service.login.on_locked(self._locked)
        service.login.on_locked_sign_in(self._locked_sign_in)
        if service.mfa is not None:
            service.mfa.on_changed(self._mfa_changed)

    def on_email_verified(self, hook: Hook[EmailVerified]) -> None:
        """Run ``hook(EmailVerified)`` after an address is verified (e.g. activate shares)."""
        self._on_verified.add(hook)

    # -- throttles ------------------------------------------------------------------

    def _recipient_key(self, email_key: str) -> str:
        """A keyed hash of the address: the same key whether or not it has an account."""
        return hmac.new(self._secret, email_key.encode(), hashlib.sha256).hexdigest()[:32]

    async def _take(self, policy_name: str, key: str) -> Verdict | None:
        """One use of ``policy_name`` for ``key``: the verdict, or None when unlimited."""
        policy = self._policies.get(policy_name)
        if self._limiter is None or policy is None:
            return None
        return await self._limiter.acquire([Check(policy, key)], offender=None)

    async def _take_or_refuse(self, policy_name: str, key: str, context: RequestContext) -> None:
        verdict = await self._take(policy_name, key)
        if verdict is not None and not verdict.allowed:
            await self._events.emit(
                "rate_limit_exceeded",
                context=context,
                details=f"rate limit {policy_name} exceeded",
                violated_policies=list(verdict.violated),
                retry_after=verdict.retry_after,
            )
            raise RateLimitedError(f"{policy_name} limit", verdict=verdict)

    # -- mail -----------------------------------------------------------------------

    async def _unsolicited_allowed(self, kind: str, email_key: str) -> bool:
        """Whether one more message anyone can trigger (a verification link, a notice
        of a registration attempt) may go to this mailbox in the ``mail`` window.

        Only those are capped: a reset link has its own per-address limit, an unlock
        link goes once per lock and a password-changed notice once per change, so an
        attacker who fills the cap cannot silence the owner's security mail. Taken only
        when there is a message to send; ``+tags`` count as their mailbox.
        """
        local, _, domain = email_key.rpartition("@")
        mailbox = f"{local.partition('+')[0]}@{domain}"
        verdict = await self._take("mail", "rcpt:" + self._recipient_key(mailbox))
        if verdict is not None and not verdict.allowed:
            await self._events.emit(
                "email_suppressed",
                details=f"{kind} email not sent: too many emails to this address",
            )
            return False
        return True

    async def _link(self, account: Account, purpose: Purpose) -> Message:
        token = await self._tokens.issue(account, purpose)
        lifetime = self._tokens.lifetime(purpose)
        if purpose == "verify-email":
            return self._letters.verify_email(account.email, token, lifetime)
        if purpose == "password-reset":
            return self._letters.password_reset(account.email, token, lifetime)
        if purpose == "sign-in":
            return self._letters.sign_in(account.email, token, lifetime)
        return self._letters.unlock(account.email, token, lifetime)

    # -- registration and verification ------------------------------------------------

    async def register(
        self,
        email: str,
        password: str,
        *,
        display_name: str | None = None,
        context: RequestContext | None = None,
    ) -> None:
        """Register; email a verification link, or, when the address has an account
        already, a notice to that address (and no second account). Same answer."""
        account = await self._login.register(
            email, password, display_name=display_name, context=context
        )
        _, key = normalize_email(email)
        if account is not None:
            self._send_verification(account)
            return

        async def notice() -> Message | None:
            existing = await self._stores.accounts.get_by_email(key)
            if existing is None or not await self._unsolicited_allowed("already-registered", key):
                return None
            return self._letters.already_registered(existing.email)

        self._postman.post(kind="already-registered", job=notice)

    def _send_verification(self, account: Account) -> None:
        async def build() -> Message | None:
            if not await self._unsolicited_allowed("verify-email", account.email_key):
                return None  # before issuing: a new link would kill the pending one
            return await self._link(account, "verify-email")

        self._postman.post(kind="verify-email", job=build)

    async def request_verification(self, email: str, *, context: RequestContext) -> None:
        """Send a new verification link when the address has an unverified account."""
        _, key = normalize_email(email)
        await self._take_or_refuse("password-reset-account", self._recipient_key(key), context)

        async def build() -> Message | None:
            account = await self._stores.accounts.get_by_email(key)
            if account is None or account.email_verified or not account.is_active:
                return None
            if not await self._unsolicited_allowed("verify-email", key):
                return None
            return await self._link(account, "verify-email")

        self._postman.post(kind="verify-email", job=build)

    async def verify_email(self, token: str, *, context: RequestContext) -> None:
        """Mark the address verified and spend the token.

        Raises:
            InvalidLinkError: unknown, used, expired or outdated link.
        """
        account, use = await self._account_for(token, "verify-email", context)
        await self._spend(
            account,
            AccountChange(
                email_verified=True,
                use_token=use,
                bump_token_version=False,
                reason="email verified",
            ),
            lambda before, after: [
                self._events.build(
                    "email_verified", context=context, user_id=str(after.id), severity="info"
                )
            ],
            context,
        )
        await self._verified(account)

    # -- forgotten password and reset -----------------------------------------------

    async def forgot_password(self, email: str, *, context: RequestContext) -> None:
        """Email a reset link when the address has an active account; always the same.

        Raises:
            InvalidEmailError: not an email address (says nothing about accounts).
            RateLimitedError: too many requests for this address (counted for every
                address alike, so a 429 says nothing about accounts either).
        """
        _, key = normalize_email(email)
        await self._take_or_refuse("password-reset-account", self._recipient_key(key), context)

        async def build() -> Message | None:
            account = await self._stores.accounts.get_by_email(key)
            known = account is not None and account.is_active
            await self._events.emit(
                "password_reset_requested",
                context=context,
                user_id=str(account.id) if account and known else None,
                details="reset link sent" if known else "no active account: nothing sent",
            )
            if account is None or not known:
                return None
            return await self._link(account, "password-reset")

        self._postman.post(kind="password-reset", job=build)

    async def reset_password(
        self, token: str, new_password: str, *, context: RequestContext
    ) -> None:
        """Set a new password with a reset link: every session and access token ends,
        a lock after failed logins ends, and the address counts as verified (the link
        reached it).

        Raises:
            InvalidLinkError: unknown, used, expired or outdated link.
            PasswordPolicyError: the new password is refused (the link stays usable).
        """
        account, use = await self._account_for(token, "password-reset", context)
        password_hash = await self._new_password_hash(account, new_password)

        def events(before: Account, after: Account) -> list[SecurityEvent | None]:
            built = [
                self._events.build(
                    "password_changed",
                    context=context,
                    user_id=str(after.id),
                    details="password reset with an emailed link; every session revoked",
                )
            ]
            if before.locked_at is not None:
                built.append(
                    self._events.build(
                        "account_unlocked",
                        context=context,
                        user_id=str(after.id),
                        details="unlocked by a password reset",
                    )
                )
            return built

        changed = await self._spend(
            account,
            AccountChange(
                password_hash=password_hash,
                revoke_sessions=True,
                locked=False,
                email_verified=True,
                use_token=use,
                reason="password reset",
            ),
            events,
            context,
        )
        self._notify_password_changed(changed, by_reset=True)
        await self._verified(account)  # the link reached the address
        await self._forget_failures(changed)

    # -- password change ------------------------------------------------------------

    async def change_password(
        self,
        principal: Principal,
        current_password: str,
        new_password: str,
        *,
        context: RequestContext,
    ) -> None:
        """Change the caller's password: the current one is required (ASVS 6.2.3); every
        other session ends, and every access token issued before (the caller refreshes
        its own with its refresh token, which stays valid: ASVS 7.4.3).

        Raises:
            WrongPasswordError: the current password is wrong (throttled per account).
            PasswordPolicyError: the new password is refused.
            RateLimitedError: too many attempts for this account.
        """
        await self._take_or_refuse("password-change", f"user:{principal.user_id}", context)
        account = await self._stores.accounts.get(principal.user_id)
        if account is None:
            raise NotFoundError("no such account")
        if not await self._login.hasher.verify(account.password_hash, current_password):
            await self._events.emit(
                "password_change_failed",
                context=context,
                user_id=str(account.id),
                details="wrong current password",
            )
            raise WrongPasswordError("wrong current password")
        if new_password == current_password:
            raise PasswordPolicyError([SAME_PASSWORD_REASON], field="new_password")
        password_hash = await self._new_password_hash(account, new_password)
        changed = await self._admin.apply(
            account.id,
            AccountChange(
                password_hash=password_hash,
                revoke_sessions=True,
                keep_session=uuid.UUID(principal.session_id),
                # Not after a revocation (a reset) that happened while this one ran,
                # nor over a password other than the one just checked.
                expect_token_version=principal.claims.tv,
                expect_password_hash=account.password_hash,
                reason="password changed",
            ),
            lambda before, after: [
                self._events.build(
                    "password_changed",
                    context=context,
                    user_id=str(after.id),
                    details="password changed; every other session revoked",
                )
            ],
        )
        self._notify_password_changed(changed, by_reset=False)

    # -- sessions -------------------------------------------------------------------

    async def sessions(self, principal: Principal) -> list[SessionView]:
        """The caller's live sessions, newest first."""
        now = self._service.clock.now()
        live = await self._stores.sessions.list_live(
            principal.user_id, now=now, idle_ttl_seconds=self._sessions.idle_ttl_seconds
        )
        live.sort(key=lambda s: (s.created_at, str(s.id)), reverse=True)
        return [SessionView(s, current=str(s.id) == principal.session_id) for s in live]

    async def end_session(
        self, principal: Principal, session_id: uuid.UUID, *, context: RequestContext
    ) -> None:
        """End one of the caller's sessions: its refresh family and its access tokens.

        Raises:
            NotFoundError: no live session of the caller has this id (another user's
                session answers the same).
        """
        session = await self._stores.sessions.get(session_id)
        now = self._service.clock.now()
        if (
            session is None
            or session.user_id != principal.user_id
            or not session.is_live(now, self._sessions.idle_ttl_seconds)
        ):
            raise NotFoundError("no such session")
        await self._stores.sessions.revoke(session_id, now=now, reason="ended by the user")
        await self._sessions.deny_session(session_id)
        await self._events.emit(
            "session_revoked",
            context=context,
            user_id=str(principal.user_id),
            details="a session ended by its user"
            + (" (the current one)" if str(session_id) == principal.session_id else ""),
            session_id=str(session_id),
        )

    # -- unlock link ----------------------------------------------------------------

    async def _locked(self, event: AccountLocked) -> None:
        account = event.account
        self._postman.post(kind="unlock", job=lambda: self._link(account, "unlock"))

    async def unlock(self, token: str, *, context: RequestContext) -> None:
        """End a lock after failed logins with the emailed link.

        Raises:
            InvalidLinkError: unknown, used, expired or outdated link (the account was
                unlocked already, or locked again since).
        """
        account, use = await self._account_for(token, "unlock", context)
        changed = await self._spend(
            account,
            AccountChange(locked=False, use_token=use, bump_token_version=False, reason="unlock"),
            lambda before, after: [
                self._events.build(
                    "account_unlocked",
                    context=context,
                    user_id=str(after.id),
                    details="unlocked with the emailed link",
                )
            ],
            context,
        )
        await self._forget_failures(changed)

    # -- sign-in link of a locked account ------------------------------------------

    async def _mfa_changed(self, event: MFAChanged) -> None:
        """A second factor turned on or off, or a recovery code used: its owner is told
        (an attacker who got in that way is seen)."""
        message = self._letters.mfa_changed(event.account.email, event.change)

        async def ready() -> Message | None:
            if event.account.email.endswith("@external.invalid"):
                return None  # an external issuer's principal has no mailbox here
            return message

        self._postman.post(ready, kind=f"mfa-{event.change}")

    async def _locked_sign_in(self, event: LockedSignIn) -> None:
        """The right password reached a locked account from an unknown device: email a
        sign-in link. Issued in the background, so neither the answer nor its timing
        differs from a wrong password's; a newer link replaces an unused older one. Not
        capped with the mail anyone can trigger: only the password triggers it."""
        account = event.account
        self._postman.post(kind="sign-in", job=lambda: self._link(account, "sign-in"))

    async def sign_in_with_link(
        self, token: str, *, context: RequestContext, user_agent: str | None
    ) -> TokenPair:
        """Finish a locked account's sign-in with the emailed link: the link is spent,
        a session opens, and this device gets a device cookie. The lock stays (it stops
        guessing, not the owner) until the unlock link, a reset or an admin ends it.

        Raises:
            InvalidLinkError: unknown, used, expired or outdated link (the password
                changed, or the account's tokens were revoked, since it was sent).
        """
        account, use = await self._account_for(token, "sign-in", context)
        changed = await self._spend(
            account,
            AccountChange(use_token=use, bump_token_version=False, reason="sign-in link"),
            lambda before, after: [],
            context,
        )
        return await self._login.sign_in_confirmed(changed, context=context, user_agent=user_agent)

    # -- shared steps ---------------------------------------------------------------

    async def _new_password_hash(self, account: Account, new_password: str) -> str:
        """The hash of an acceptable new password for ``account``.

        Raises:
            PasswordPolicyError: about the request's ``new_password``.
        """
        await self._login.check_password(
            new_password,
            email=account.email,
            display_name=account.display_name,
            field="new_password",
        )
        return await self._login.hasher.hash(new_password)

    def _notify_password_changed(self, account: Account, *, by_reset: bool) -> None:
        message = self._letters.password_changed(account.email, by_reset=by_reset)

        async def ready() -> Message:
            return message

        self._postman.post(ready, kind="password-changed")

    async def _account_for(
        self, token: str, purpose: Purpose, context: RequestContext
    ) -> tuple[Account, TokenUse]:
        try:
            found, use = await self._tokens.check(token, purpose)
            account = await self._stores.accounts.get(found.user_id)
            if account is None or not account.is_active:
                raise InvalidLinkError("account gone or disabled")
        except InvalidLinkError as exc:
            await self._link_refused(purpose, exc, context)
            raise
        return account, use

    async def _spend(
        self,
        account: Account,
        change: AccountChange,
        events: Callable[[Account, Account], list[SecurityEvent | None]],
        context: RequestContext,
    ) -> Account:
        assert change.use_token is not None
        try:
            return await self._admin.apply(account.id, change, events)
        except InvalidLinkError as exc:
            await self._link_refused(change.use_token.purpose, exc, context)
            raise

    async def _link_refused(
        self, purpose: str, exc: InvalidLinkError, context: RequestContext
    ) -> None:
        await self._events.emit(
            "auth_failure", context=context, details=f"{purpose} link refused: {exc.reason}"
        )

    async def _verified(self, before: Account) -> None:
        """Run the hooks when an address has just become verified."""
        if not before.email_verified:
            await self._on_verified.run(EmailVerified(before.id, before.email))

    async def _forget_failures(self, account: Account) -> None:
        """Best effort, after the change has committed: the lock itself is gone already."""
        defence = self._login.defence
        if defence is None:
            return
        try:
            await defence.unlock(defence.account_key(account.email_key))
        except StoreUnavailableError:
            _logger.warning("could not forget the failed logins of %s", account.id)
