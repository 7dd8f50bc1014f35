"""Sessions: opened after a proof of identity, rotated on refresh, revoked.

:meth:`Sessions.open` is the one way a session starts, whatever proved the caller (a
password, the emailed sign-in link, and next an OpenID Connect sign-in or a second
factor): the same checks of the account's state, the same conditional insert against a
change that commits meanwhile, the same events.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import NoReturn

from bastion.accounts._admin import AccountAdmin
from bastion.accounts._authenticator import Authenticator
from bastion.accounts._types import Principal, Proof, TokenPair
from bastion.clock import Clock
from bastion.errors import (
    InvalidCredentialsError,
    InvalidTokenError,
    MFARequiredError,
    TokenReuseError,
)
from bastion.events import EventLog, RequestContext
from bastion.stores import Account, AccountChange, AuthSession, Stores
from bastion.tokens import AccessTokens
from bastion.tokens.refresh import new_refresh_token, refresh_digest

__all__ = ["REFUSAL_OUTCOMES", "Sessions", "changed_during_sign_in"]

# The ``outcome`` of an auth_failure for each refusal of an account's state (a closed
# set: the metrics count it).
REFUSAL_OUTCOMES = {
    "account disabled": "disabled",
    "account locked": "locked",
    "email not verified": "unverified",
}


class Sessions:
    """Open, rotate and revoke sessions; each revocation is durable before it is cached."""

    def __init__(
        self,
        stores: Stores,
        *,
        events: EventLog,
        clock: Clock,
        access_tokens: AccessTokens,
        authenticator: Authenticator,
        admin: AccountAdmin,
        idle_ttl: timedelta = timedelta(days=14),
        absolute_ttl: timedelta = timedelta(days=30),
        require_verified_email: bool = False,
    ) -> None:
        self._stores = stores
        self._events = events
        self._clock = clock
        self._access = access_tokens
        self._authenticator = authenticator
        self._admin = admin
        self._idle_ttl = idle_ttl
        self._absolute_ttl = absolute_ttl
        self._require_verified = require_verified_email
        # The second step of a sign-in: makes the mfa_token of an account with MFA on
        # (SecondFactor sets it).
        self.challenge: Callable[[Account, Proof, RequestContext, str | None], str] | None = None

    @property
    def idle_ttl_seconds(self) -> int:
        return int(self._idle_ttl.total_seconds())

    def refusal(self, account: Account, proof: Proof) -> str:
        """Why ``account`` may not open a session on ``proof``, or "" when it may: a
        disabled account, a locked one (unless the proof passes the lock), an unverified
        address where sessions need a verified one."""
        if not account.is_active:
            return "account disabled"
        if account.locked_at is not None and not proof.passes_lock:
            return "account locked"
        if self._require_verified and not account.email_verified:
            return "email not verified"
        return ""

    async def open(
        self,
        account: Account,
        proof: Proof,
        *,
        context: RequestContext,
        user_agent: str | None,
    ) -> TokenPair:
        """Open a session for ``account``, whose owner has just given ``proof``.

        ``account`` is the account as read before the proof was checked: the session is
        stored only if the account is still so (active, same token version and password
        hash) in the insert's transaction, so a password change, reset or revocation that
        commits meanwhile ends this sign-in too. Emits ``auth_success`` (with the proof's
        ``amr``), or ``auth_failure`` when refused.

        Raises:
            InvalidCredentialsError: the account is disabled, locked (for a proof that
                does not pass the lock), unverified where that is required, or changed
                while the proof was checked.
        """
        refusal = self.refusal(account, proof)
        if not refusal and account.mfa_enabled and not proof.second_factor:
            # The first step passed: the second is asked for (SecondFactor.verify).
            if self.challenge is None:
                raise InvalidCredentialsError("a second factor is required and none is set up")
            raise MFARequiredError(self.challenge(account, proof, context, user_agent))
        if refusal:
            await self._events.emit(
                "auth_failure",
                context=context,
                user_id=str(account.id),
                details=refusal,
                outcome=REFUSAL_OUTCOMES[refusal],
                amr=list(proof.amr),
            )
            raise InvalidCredentialsError(refusal)
        now = self._clock.now()
        session = AuthSession(
            id=uuid.uuid4(),
            user_id=account.id,
            created_at=now,
            last_used_at=now,
            absolute_expires_at=now + self._absolute_ttl,
            ip_address=context.ip_address,
            user_agent=_clip(user_agent),
            amr=" ".join(proof.amr)[:64],
        )
        refresh_token = new_refresh_token()
        if not await self._stores.sessions.create(
            session, refresh_digest(refresh_token), expect=account
        ):
            await changed_during_sign_in(self._events, account, context)
        await self._authenticator.remember(account)
        pair = self._pair(account, session, refresh_token, now)
        await self._events.emit(
            "auth_success",
            context=context,
            user_id=str(account.id),
            details=proof.details,
            outcome="success",
            amr=list(proof.amr),
        )
        return pair

    async def rotate(
        self, refresh_token: str, *, context: RequestContext, user_agent: str | None
    ) -> TokenPair:
        """Rotate the refresh token: the presented one is used up, a new pair is issued.

        Raises:
            TokenReuseError: the token had already been rotated; its family is revoked.
            InvalidTokenError: unknown, revoked or expired token, or disabled account.
        """
        new_token = new_refresh_token()
        now = self._clock.now()
        outcome = await self._stores.sessions.rotate(
            refresh_digest(refresh_token),
            refresh_digest(new_token),
            now=now,
            idle_ttl_seconds=self.idle_ttl_seconds,
            ip_address=context.ip_address,
            user_agent=_clip(user_agent),
        )
        session = outcome.session
        if outcome.status == "reused" and session is not None:
            await self.deny_session(session.id)
            await self._events.emit(
                "token_reuse_detected",
                context=context,
                user_id=str(session.user_id),
                details="a rotated refresh token was presented; its session was revoked",
            )
            raise TokenReuseError(session_id=str(session.id), user_id=str(session.user_id))
        if outcome.status != "rotated" or session is None:
            await self._events.emit(
                "auth_failure",
                context=context,
                user_id=str(session.user_id) if session else None,
                details=f"refresh token {outcome.status}",
            )
            raise InvalidTokenError(f"refresh token {outcome.status}")
        # The account as read in the rotation's transaction, never after it: a
        # revocation that commits after the rotation must revoke this access token too.
        account = outcome.account
        if account is None or not account.is_active:
            await self._stores.sessions.revoke(session.id, now=now, reason="account disabled")
            raise InvalidTokenError("account disabled")
        await self._events.emit("token_refreshed", context=context, user_id=str(account.id))
        return self._pair(account, session, new_token, now)

    async def session_of_refresh_token(self, refresh_token: str) -> str | None:
        """The id of the session a refresh token belongs to, or None; nothing is used up."""
        session = await self._stores.sessions.find_by_token(refresh_digest(refresh_token))
        return str(session.id) if session is not None else None

    async def logout(
        self, principal: Principal, refresh_token: str | None, *, context: RequestContext
    ) -> None:
        """End this session: its refresh family and every access token issued for it.

        Each revocation is in the database before it is cached: the access token's
        ``jti`` (a denial record), the sessions (their ``revoked_at``).
        """
        now = self._clock.now()
        session_ids = {principal.session_id}
        if refresh_token:
            other = await self._stores.sessions.find_by_token(refresh_digest(refresh_token))
            if other is not None and other.user_id == principal.user_id:
                session_ids.add(str(other.id))
        jti, until = principal.claims.jti, _from_ts(principal.claims.exp) + timedelta(seconds=60)
        await self._stores.denials.deny(jti, until, now=now)
        for session_id in session_ids:
            await self._stores.sessions.revoke(uuid.UUID(session_id), now=now, reason="logout")
        for session_id in session_ids:
            await self.deny_session(session_id)
        await self._authenticator.cache_denial(jti, until)
        await self._events.emit("logout", context=context, user_id=str(principal.user_id))

    async def replace(self, principal: Principal, *, context: RequestContext) -> None:
        """End the caller's session after a new one replaced it (a re-authentication):
        its refresh family and its access tokens."""
        now = self._clock.now()
        try:
            session_id = uuid.UUID(principal.session_id)
        except ValueError:
            return
        await self._stores.sessions.revoke(session_id, now=now, reason="re-authenticated")
        await self.deny_session(session_id)

    async def logout_all(self, principal: Principal, *, context: RequestContext) -> None:
        """Every session and every access token of the caller, at once (token version)."""
        await self._admin.apply(
            principal.user_id,
            AccountChange(revoke_sessions=True, reason="logout-all"),
            lambda before, after: [
                self._events.build(
                    "logout", context=context, user_id=str(after.id), details="all sessions"
                )
            ],
        )

    async def revoke_sessions(
        self, actor: Principal, user_id: uuid.UUID, *, context: RequestContext
    ) -> None:
        """An admin ends every session and access token of ``user_id``.

        Raises:
            NotFoundError: no such account.
        """
        await self._admin.apply(
            user_id,
            AccountChange(revoke_sessions=True, reason="revoked by an admin"),
            lambda before, after: [
                self._events.build(
                    "sessions_revoked",
                    context=context,
                    user_id=str(actor.user_id),
                    details=f"every session of {after.id} revoked by an admin",
                    target_user_id=str(after.id),
                )
            ],
        )

    async def deny_session(self, session_id: uuid.UUID | str) -> None:
        """Deny every access token of a session at once (until the longest expires).

        Call it after the session was revoked in the session store: its ``revoked_at``
        is the durable record the cache is rebuilt from; this writes the cache.
        """
        until = self._clock.now() + self._access.ttl + timedelta(seconds=60)
        await self._authenticator.cache_denial(f"sid:{session_id}", until)

    def _pair(
        self, account: Account, session: AuthSession, refresh_token: str, now: datetime
    ) -> TokenPair:
        access_token, _ = self._access.issue(
            subject=str(account.id),
            role=account.role,
            session_id=str(session.id),
            token_version=account.token_version,
            # The session was opened on its proof: a refresh keeps when and how.
            auth_time=int(session.created_at.timestamp()),
            amr=session.amr.split(),
        )
        refresh_left = min(now + self._idle_ttl, session.absolute_expires_at) - now
        return TokenPair(
            access_token=access_token,
            expires_in=int(self._access.ttl.total_seconds()),
            refresh_token=refresh_token,
            refresh_expires_in=max(0, int(refresh_left.total_seconds())),
            session_id=str(session.id),
        )


async def changed_during_sign_in(
    events: EventLog, account: Account, context: RequestContext
) -> NoReturn:
    """Refuse a sign-in whose account changed while its proof was checked: as a wrong
    password (the password it proved may be the one just replaced)."""
    reason = "account changed during the login (password changed or sessions revoked)"
    await events.emit(
        "auth_failure",
        context=context,
        user_id=str(account.id),
        details=reason,
        outcome="failure",
    )
    raise InvalidCredentialsError(reason)


def _clip(value: str | None, limit: int = 512) -> str | None:
    return value[:limit] if value else None


def _from_ts(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
