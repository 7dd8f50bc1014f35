"""Accounts and sessions: registration, login, refresh, request authentication, logout.

Every credential failure raises a precise error for logs and events; the web layer
turns them all into one opaque answer (STYLE principle 7).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NoReturn, TypeVar

from bastion.accounts._emails import normalize_email
from bastion.authz import ROLE_ORDER, Subject
from bastion.clock import Clock, SystemClock
from bastion.errors import (
    ConflictError,
    InvalidCredentialsError,
    InvalidTokenError,
    NotFoundError,
    PasswordPolicyError,
    RateLimitedError,
    RevocationCacheColdError,
    ServiceUnavailableError,
    TokenReuseError,
)
from bastion.events import EventLog, RequestContext
from bastion.net import rate_partition
from bastion.passwords import BreachChecks, PasswordHasher, PasswordPolicy
from bastion.stores import Account, AccountChange, AuthSession, SecurityEvent, Stores, UserState
from bastion.stores.redis import RedisRevocationStore
from bastion.throttle import LoginDefence, LoginGate, StoreUnavailableError, Verdict
from bastion.tokens import AccessClaims, AccessTokens
from bastion.tokens.refresh import new_refresh_token, refresh_digest

__all__ = ["BREACHED_REASON", "AccountService", "Principal", "TokenPair"]

ROLES = ROLE_ORDER
BREACHED_REASON = (
    "This password has appeared in a data breach, so attackers try it first; choose another."
)
_logger = logging.getLogger("bastion.accounts")
_LONGEST_ACCESS_TTL = timedelta(hours=1)  # the settings' bound on the access-token lifetime
T = TypeVar("T")


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int
    token_type: str = "bearer"  # noqa: S105  (a token type, not a secret)
    device_token: str | None = None  # the login defence's device cookie, for a login
    session_id: str = ""  # the session both tokens belong to (binds the cookie mode's CSRF)


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of one request: role from the stored state, not the token."""

    user_id: uuid.UUID
    role: str
    session_id: str
    claims: AccessClaims

    @property
    def subject(self) -> Subject:
        return Subject(self.user_id, self.role, True, self.claims.role)


class AccountService:
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
        self._breached = breached
        self._require_verified = require_verified_email
        # Called (in the background) when failed logins lock an account: the account
        # lifecycle sends its owner an unlock link.
        self.on_locked: Callable[[Account, RequestContext], None] | None = None
        # Called (in the background) when the right password reaches a locked account
        # from a device it does not know: the lifecycle emails a sign-in link.
        self.on_locked_login: Callable[[Account, RequestContext], None] | None = None
        self._defence = defence
        self._hasher = hasher
        self._policy = policy
        self._access = access_tokens
        self._events = events
        self._clock = clock or SystemClock()
        self._idle_ttl = refresh_idle_ttl
        self._absolute_ttl = refresh_absolute_ttl
        # The revocation cache's rebuilds (restore_revocations): one at a time, counted,
        # and whether a denial failed to reach the cache since the last one.
        self._restoring = asyncio.Lock()
        self._restores = 0
        self._cache_unsure = False

    @property
    def access_ttl(self) -> timedelta:
        return self._access.ttl

    @property
    def hasher(self) -> PasswordHasher:
        return self._hasher

    @property
    def stores(self) -> Stores:
        return self._stores

    @property
    def events(self) -> EventLog:
        return self._events

    @property
    def defence(self) -> LoginDefence | None:
        return self._defence

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def idle_ttl_seconds(self) -> int:
        return int(self._idle_ttl.total_seconds())

    async def check_password(
        self,
        password: str,
        *,
        email: str,
        display_name: str | None,
        field: str = "password",
    ) -> None:
        """Raise PasswordPolicyError with the reasons (about the request's ``field``).

        The policy (length, common passwords, zxcvbn with the account's own words as
        context) runs off the event loop; then the breached-password sources, if any
        (ASVS 6.2.12). A source that cannot answer does not block the password: it is
        logged as a warning and a ``breach_check_unavailable`` event (fail open, so that
        an outage of the range API never blocks sign-up).
        """
        local = email.partition("@")[0]
        context = [email, local, *([display_name] if display_name else [])]
        try:
            await asyncio.to_thread(self._policy.check, password, user_inputs=context)
        except PasswordPolicyError as exc:
            raise PasswordPolicyError(exc.reasons, field=field) from None
        if not self._breached:
            return
        verdict = await self._breached.check(password)
        for failure in verdict.unavailable:
            _logger.warning("breached-password check unavailable: %s", failure)
            self._events.emit_soon(
                "breach_check_unavailable",
                details=f"breached-password source did not answer ({failure}); password allowed",
            )
        if verdict.breached:
            raise PasswordPolicyError([BREACHED_REASON], field=field)

    async def register(
        self,
        email: str,
        password: str,
        *,
        display_name: str | None = None,
        role: str = "member",
        email_verified: bool = False,
        context: RequestContext | None = None,
    ) -> Account | None:
        """Create an account; None when the email is taken (the caller answers the same).

        Both paths hash the password, so the answer's timing does not tell them apart.
        ``email_verified`` is for accounts an operator creates, who vouches for the address.

        Raises:
            InvalidEmailError, PasswordPolicyError, ServiceBusyError.
        """
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        email, key = normalize_email(email, new=True)
        await self.check_password(password, email=email, display_name=display_name)
        password_hash = await self._hasher.hash(password)
        now = self._clock.now()
        # An id reserved by an earlier share with this address becomes the account's.
        reserved = await self._stores.accounts.resolve_id(key, reserve=False)
        account = Account(
            id=reserved[0] if reserved else uuid.uuid4(),
            email=email,
            email_key=key,
            password_hash=password_hash,
            display_name=display_name,
            role=role,
            email_verified=email_verified,
            created_at=now,
            updated_at=now,
        )
        try:
            await self._stores.accounts.add(account)
        except ConflictError:
            await self._events.emit(
                "registration_conflict",
                context=context,
                details="email already registered",
                severity="low",
            )
            return None
        await self._events.emit("user_registered", context=context, user_id=str(account.id))
        return account

    async def login(
        self,
        email: str,
        password: str,
        *,
        context: RequestContext,
        user_agent: str | None,
        device_cookie: str | None = None,
        solution: str | None = None,
    ) -> TokenPair:
        """Check the credentials and open a session.

        With the login defence on, the attempt first passes it (per-account limit,
        stuffing block, delays, challenge, lock; see :mod:`bastion.throttle._login`);
        ``device_cookie`` is the caller's device cookie, ``solution`` its solved challenge.

        Raises:
            InvalidCredentialsError: unknown email, wrong password, disabled or locked
                account, an unverified address where logins need a verified one, an
                account whose password or sessions changed while its password was
                checked, or an attempt the defence holds back (with ``retry_after`` or
                ``challenge``).
            RateLimitedError: the per-account limit, or the IP's stuffing block.
            ServiceBusyError: the hashing pool is saturated.
            ServiceUnavailableError: the shared login-defence store does not answer.
        """
        try:
            _, key = normalize_email(email)
        except ValueError:
            key = None
        defence = self._defence
        gate: LoginGate | None = None
        ip = rate_partition(context.ip_address)  # IPv6 by its /64, as the limiter
        account_key = defence.account_key(key or email.strip().lower()[:320]) if defence else ""
        account = await self._stores.accounts.get_by_email(key) if key else None
        if defence is not None:
            # A device cookie counts only for the account's current password.
            generation = defence.credential_generation(account.password_hash) if account else ""
            gate = await self._guard_login(
                defence, account_key, ip, context, device_cookie, solution, generation
            )
        # An unknown email verifies against a dummy hash: same cost as a wrong password;
        # a locked account checks its password too, so its answer takes as long.
        ok = await self._hasher.verify(account.password_hash if account else None, password)
        locked = account is not None and account.locked_at is not None
        # Why an account is refused whatever the password, if it is.
        refusal = ""
        if account is not None:
            refusal = (
                "account disabled"
                if not account.is_active
                else "account locked"
                if locked and not (gate and gate.trusted)
                else "email not verified"
                if self._require_verified and not account.email_verified
                else ""
            )
        # The reason is for the log (admins only); the outcome, a closed set, is for the
        # metrics, which are read more widely: it names the account's state and never
        # whether the password was right, or a refused right guess would show there.
        reason = (
            "unknown account"
            if account is None
            else ("invalid password" + (f" ({refusal})" if refusal else ""))
            if not ok
            else refusal
        )
        outcome = (
            _REFUSAL_OUTCOMES[refusal]
            if refusal
            else "failure"
            if account is None or not ok
            else "success"
        )
        if reason or account is None:
            retry_after = 0
            # Counted whatever the password: a locked or disabled account must not answer
            # a right guess differently (no Retry-After) from a wrong one.
            if defence is not None and gate is not None:
                retry_after = await self._login_failed(
                    defence, account_key, ip, gate, account, context
                )
            if (
                ok
                and refusal == "account locked"
                and account is not None
                and self.on_locked_login is not None
                and (account.email_verified or not self._require_verified)
            ):
                # The right password on a locked account, from a device it does not
                # know: the answer stays that of a wrong password (after the lock, a
                # guess learns nothing), and the owner's mailbox gets a sign-in link.
                self.on_locked_login(account, context)
            await self._events.emit(
                "auth_failure",
                context=context,
                user_id=str(account.id) if account else None,
                details=reason,
                outcome=outcome,
            )
            # An unverified address answers as any failure: else registering an address
            # and logging in would tell whether it had an account before.
            raise InvalidCredentialsError(reason, retry_after=retry_after)
        if account.password_hash and self._hasher.needs_rehash(account.password_hash):
            # Upgrade on successful login (STYLE principle 9): new profile, or legacy bcrypt.
            account = await self._rehash(account, await self._hasher.hash(password), context)
        device_token = None
        if defence is not None and gate is not None:
            await self._unavailable_is_closed(defence.succeeded(account_key, ip, gate), context)
            device_token = defence.issue_device(
                account_key, defence.credential_generation(account.password_hash)
            )
        pair = await self._open_session(account, context=context, user_agent=user_agent)
        await self._events.emit(
            "auth_success", context=context, user_id=str(account.id), outcome="success"
        )
        return dataclasses.replace(pair, device_token=device_token)

    async def sign_in_confirmed(
        self, account: Account, *, context: RequestContext, user_agent: str | None
    ) -> TokenPair:
        """Open a session for ``account`` whose owner proved the password and then the
        mailbox (the emailed sign-in link of a locked account); the device that followed
        the link gets a device cookie, as after a login."""
        device_token = None
        if self._defence is not None:
            defence = self._defence
            device_token = defence.issue_device(
                defence.account_key(account.email_key),
                defence.credential_generation(account.password_hash),
            )
        pair = await self._open_session(account, context=context, user_agent=user_agent)
        await self._events.emit(
            "auth_success",
            context=context,
            user_id=str(account.id),
            outcome="success",
            details="signed in with the emailed sign-in link of a locked account",
        )
        return dataclasses.replace(pair, device_token=device_token)

    async def _unavailable_is_closed(self, call: Awaitable[T], context: RequestContext) -> T:
        """Await a login-defence call; a store that does not answer refuses the login."""
        try:
            return await call
        except StoreUnavailableError as exc:
            await self._events.emit(
                "rate_limit_unavailable",
                context=context,
                details="login refused: the login-defence store does not answer",
            )
            raise ServiceUnavailableError("login defence store unavailable") from exc

    async def _guard_login(
        self,
        defence: LoginDefence,
        account_key: str,
        ip: str,
        context: RequestContext,
        device_cookie: str | None,
        solution: str | None,
        generation: str,
    ) -> LoginGate:
        gate = await self._unavailable_is_closed(
            defence.before(
                account_key,
                ip,
                device_cookie=device_cookie,
                solution=solution,
                generation=generation,
            ),
            context,
        )
        if gate.refusal == "rate" and gate.verdict is not None:
            await self._events.emit(
                "rate_limit_exceeded",
                context=context,
                details="rate limit login (per account) exceeded",
                violated_policies=list(gate.verdict.violated),
                retry_after=gate.retry_after,
            )
            raise RateLimitedError("login rate limit", verdict=gate.verdict)
        if gate.refusal == "stuffing":
            await self._events.emit(
                "auth_failure",
                context=context,
                details=f"login refused: credential-stuffing block ({gate.retry_after} s)",
                outcome="blocked",
            )
            verdict = Verdict(False, (), gate.retry_after, ("credential-stuffing",))
            raise RateLimitedError("credential-stuffing block", verdict=verdict)
        if gate.refusal == "delayed":
            await self._events.emit(
                "auth_failure",
                context=context,
                details=f"login delayed after repeated failures ({gate.retry_after} s)",
                outcome="delayed",
            )
            raise InvalidCredentialsError("login delayed", retry_after=gate.retry_after)
        if gate.refusal == "challenge":
            await self._events.emit(
                "auth_failure",
                context=context,
                details="login needs a proof-of-work challenge after repeated failures",
                outcome="challenge",
            )
            raise InvalidCredentialsError("challenge required", challenge=gate.challenge)
        return gate

    async def _login_failed(
        self,
        defence: LoginDefence,
        account_key: str,
        ip: str,
        gate: LoginGate,
        account: Account | None,
        context: RequestContext,
    ) -> int:
        """Count a failed password; lock the account at the threshold; flag stuffing."""
        outcome = await self._unavailable_is_closed(defence.failed(account_key, ip, gate), context)
        if outcome.stuffing_blocked:
            await self._events.emit(
                "suspicious_activity",
                context=context,
                details=(
                    f"credential stuffing: failed logins on {outcome.stuffing_accounts} "
                    "accounts from one IP; its logins are blocked"
                ),
            )
        if outcome.lock and account is not None and account.locked_at is None:
            failures = outcome.account_failures
            already = False

            def lock_event(before: Account, after: Account) -> list[SecurityEvent | None]:
                nonlocal already  # a concurrent failure locked it first: one event, one email
                already = before.locked_at is not None
                return [] if already else [
                    self._events.build(
                        "account_locked",
                        context=context,
                        user_id=str(after.id),
                        details=f"{failures} consecutive failed logins; locked until unlocked",
                    )
                ]

            locked = await self.apply(
                account.id,
                AccountChange(locked=True, bump_token_version=False, reason="failed logins"),
                lock_event,
            )
            if self.on_locked is not None and not already:
                self.on_locked(locked, context)
        return outcome.retry_after

    async def unlock(
        self, actor: Principal, user_id: uuid.UUID, *, context: RequestContext
    ) -> None:
        """An admin ends a lock after failed logins and forgets the account's failures.

        Raises:
            NotFoundError: no such account.
        """
        account = await self._stores.accounts.get(user_id)
        if account is None:
            raise NotFoundError("no such account")
        if self._defence is not None:
            await self._unavailable_is_closed(
                self._defence.unlock(self._defence.account_key(account.email_key)), context
            )
        await self.apply(
            user_id,
            AccountChange(locked=False, bump_token_version=False, reason="unlocked"),
            lambda before, after: [
                self._events.build(
                    "account_unlocked",
                    context=context,
                    user_id=str(after.id),
                    details="unlocked by an admin",
                    actor_id=str(actor.user_id),
                    was_locked=before.locked_at is not None,
                )
            ],
        )

    async def _open_session(
        self, account: Account, *, context: RequestContext, user_agent: str | None
    ) -> TokenPair:
        now = self._clock.now()
        session = AuthSession(
            id=uuid.uuid4(),
            user_id=account.id,
            created_at=now,
            last_used_at=now,
            absolute_expires_at=now + self._absolute_ttl,
            ip_address=context.ip_address,
            user_agent=_clip(user_agent),
        )
        refresh_token = new_refresh_token()
        # Only if ``account`` (as read before its password was checked) is still current
        # when the session is stored, in the same transaction: a password change, reset
        # or revocation that commits while the password is checked ends this login too.
        if not await self._stores.sessions.create(
            session, refresh_digest(refresh_token), expect=account
        ):
            await self._changed_during_login(account, context)
        await self._cache_state(account)
        return self._pair(account, session, refresh_token, now)

    async def _rehash(self, account: Account, new_hash: str, context: RequestContext) -> Account:
        """Store ``new_hash`` only over the hash the login checked, at its token version:
        never over a password changed or reset meanwhile (that would bring the old
        password back)."""
        change = AccountChange(
            password_hash=new_hash,
            bump_token_version=False,
            expect_token_version=account.token_version,
            expect_password_hash=account.password_hash,
            reason="password hash upgraded",
        )
        try:
            return await self._stores.accounts.change(
                account.id, change, now=self._clock.now(), events=lambda before, after: []
            )
        except InvalidTokenError:
            await self._changed_during_login(account, context)

    async def _changed_during_login(self, account: Account, context: RequestContext) -> NoReturn:
        """Refuse a login whose account changed while its password was checked: as a
        wrong password (the password it proved may be the one just replaced)."""
        reason = "account changed during the login (password changed or sessions revoked)"
        await self._events.emit(
            "auth_failure",
            context=context,
            user_id=str(account.id),
            details=reason,
            outcome="failure",
        )
        raise InvalidCredentialsError(reason)

    def _pair(
        self, account: Account, session: AuthSession, refresh_token: str, now: datetime
    ) -> TokenPair:
        access_token, _ = self._access.issue(
            subject=str(account.id),
            role=account.role,
            session_id=str(session.id),
            token_version=account.token_version,
        )
        refresh_left = min(now + self._idle_ttl, session.absolute_expires_at) - now
        return TokenPair(
            access_token=access_token,
            expires_in=int(self._access.ttl.total_seconds()),
            refresh_token=refresh_token,
            refresh_expires_in=max(0, int(refresh_left.total_seconds())),
            session_id=str(session.id),
        )

    async def refresh(
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
            idle_ttl_seconds=int(self._idle_ttl.total_seconds()),
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

    def revocation_keys(self, claims: AccessClaims) -> list[str] | None:
        """The Redis keys :meth:`authenticate` reads for this token, for the rate
        limiter's script to read along in its round trip (None: the store is not Redis)."""
        store = self._stores.revocation
        if not isinstance(store, RedisRevocationStore):
            return None
        return store.check_keys(claims.sub, _revocation_ids(claims))

    async def authenticate(
        self,
        access_token: str,
        *,
        verified: AccessClaims | None = None,
        revocation: Sequence[bytes | None] | None = None,
    ) -> Principal:
        """Verify an access token and check it against the revocation state.

        One revocation-store round trip: the token's ``jti`` and session, and the user's
        cached state (token version, role, active); a miss reads the account once. A
        cache that is not known to be complete (a new process, Redis emptied) is rebuilt
        from the database first, and read again.

        Raises:
            InvalidTokenError: forged, expired, revoked, or the account is disabled.
            ServiceUnavailableError: the revocation cache does not answer or cannot be
                rebuilt: no token is believed (fail closed).

        ``verified`` are the claims of ``access_token`` when its signature and times were
        checked already in this request (by the rate limiter); never from elsewhere.
        ``revocation`` are the values of :meth:`revocation_keys` for these claims, read
        in this request by the rate limiter's script: then no round trip of its own.
        """
        claims = verified if verified is not None else self._access.verify(access_token)
        store = self._stores.revocation
        ids = _revocation_ids(claims)
        try:
            if self._cache_unsure:
                raise RevocationCacheColdError("a revocation was not cached")
            if revocation is not None and isinstance(store, RedisRevocationStore):
                state, revoked = store.read_check(revocation)
            else:
                state, revoked = await store.check(claims.sub, ids)
        except RevocationCacheColdError:
            # A new process, or Redis lost its data: no "not revoked" is believed until
            # the cache holds the durable record again (a second read, this once).
            await self.restore_revocations()
            state, revoked = await store.check(claims.sub, ids)
        if revoked:
            raise InvalidTokenError("token revoked")
        if state is None:
            try:
                account = await self._stores.accounts.get(uuid.UUID(claims.sub))
            except ValueError:
                account = None
            if account is None:
                raise InvalidTokenError("unknown subject")
            state = await self._cache_state(account)
        if not state.is_active:
            raise InvalidTokenError("account disabled")
        if claims.tv != state.token_version:
            raise InvalidTokenError("token version revoked")
        return Principal(uuid.UUID(claims.sub), state.role, claims.sid, claims)

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
        await self._cache_denial(jti, until)
        await self._events.emit("logout", context=context, user_id=str(principal.user_id))

    async def logout_all(self, principal: Principal, *, context: RequestContext) -> None:
        """Every session and every access token of the caller, at once (token version)."""
        await self.apply(
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
        await self.apply(
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

    async def change_standing(
        self,
        actor: Principal,
        user_id: uuid.UUID,
        *,
        role: str | None = None,
        is_active: bool | None = None,
        context: RequestContext,
    ) -> Account:
        """Change an account's role or active flag; events in the same transaction.

        Every change bumps the token version, so the account's access tokens die with
        the standing they were issued for (a refresh issues one with the new role);
        disabling an account also ends its sessions (ASVS 7.4.2). Every request checks
        the stored role and state as well.

        Raises:
            NotFoundError: no such account.
            LastAdminError: the change would leave no active admin.
        """
        if role is not None and role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        change = AccountChange(
            role=role,
            is_active=is_active,
            revoke_sessions=is_active is False,
            reason="account disabled",
        )

        def events(before: Account, after: Account) -> list[SecurityEvent | None]:
            built: list[SecurityEvent | None] = []
            if before.role != after.role:
                built.append(
                    self._events.build(
                        "role_changed",
                        context=context,
                        user_id=str(actor.user_id),
                        details=f"role of {after.id} changed from {before.role} to {after.role}",
                        old_role=before.role,
                        new_role=after.role,
                        target_user_id=str(after.id),
                    )
                )
            if before.is_active != after.is_active:
                built.append(
                    self._events.build(
                        "account_enabled" if after.is_active else "account_disabled",
                        context=context,
                        user_id=str(actor.user_id),
                        details=f"account {after.id} "
                        + ("enabled" if after.is_active else "disabled, its sessions revoked"),
                        target_user_id=str(after.id),
                    )
                )
            return built

        return await self.apply(user_id, change, events)

    async def apply(
        self,
        user_id: uuid.UUID,
        change: AccountChange,
        events: Callable[[Account, Account], Sequence[SecurityEvent | None]],
    ) -> Account:
        """Apply ``change`` with the events built from the account before and after it,
        in one transaction; the cached standing is dropped first and written after."""
        stored: list[SecurityEvent] = []

        def collect(before: Account, after: Account) -> list[SecurityEvent]:
            stored[:] = [e for e in events(before, after) if e is not None]
            return stored

        # Forget the cached state first: should the change fail half-way (Redis down
        # after the commit), the next request reads the database, never a stale grant.
        # The change bumps the token version, and cache writes never replace a higher
        # version: a login or request that read the account before the commit cannot
        # write its older state back afterwards.
        await self._stores.revocation.forget_user_state(str(user_id))
        account = await self._stores.accounts.change(
            user_id, change, now=self._clock.now(), events=collect
        )
        for event in stored:
            await self._events.publish(event, stored=True)
        await self._cache_state(account)
        return account

    async def list_accounts(
        self,
        *,
        limit: int,
        after: tuple[datetime, uuid.UUID] | None = None,
        role: str | None = None,
        is_active: bool | None = None,
    ) -> list[Account]:
        return await self._stores.accounts.page(
            limit=limit, after=after, role=role, is_active=is_active
        )

    async def resolve_account_id(self, email: str) -> tuple[uuid.UUID, bool]:
        """The account id for ``email`` and True, or an id reserved for it (until it
        registers) and False. Both cost the same database work.

        Raises:
            InvalidEmailError: not an email address.
        """
        _, key = normalize_email(email, new=True)
        resolved = await self._stores.accounts.resolve_id(key, reserve=True)
        assert resolved is not None
        return resolved

    async def peek_account_id(self, email: str) -> uuid.UUID | None:
        """The account or reserved id of ``email`` without reserving one."""
        _, key = normalize_email(email)
        resolved = await self._stores.accounts.resolve_id(key, reserve=False)
        return resolved[0] if resolved else None

    async def subject(self, user_id: uuid.UUID) -> Subject | None:
        """The stored standing of ``user_id``, for decisions about a user who is not the
        caller (the admin decision endpoint)."""
        account = await self._stores.accounts.get(user_id)
        if account is None:
            return None
        return Subject(account.id, account.role, account.is_active)

    async def get_account(self, user_id: uuid.UUID) -> Account | None:
        return await self._stores.accounts.get(user_id)

    async def update_profile(self, user_id: uuid.UUID, *, display_name: str | None) -> Account:
        account = await self._stores.accounts.update(user_id, display_name=display_name)
        if account is None:
            raise InvalidTokenError("unknown subject")
        return account

    async def _cache_state(self, account: Account) -> UserState:
        state = UserState(account.token_version, account.role, account.is_active)
        await self._stores.revocation.put_user_state(str(account.id), state)
        return state

    async def deny_session(self, session_id: uuid.UUID | str) -> None:
        """Deny every access token of a session at once (until the longest expires).

        Call it after the session was revoked in the session store: its ``revoked_at``
        is the durable record the cache is rebuilt from; this writes the cache.
        """
        until = self._clock.now() + self._access.ttl + timedelta(seconds=60)
        await self._cache_denial(f"sid:{session_id}", until)

    async def _cache_denial(self, token_id: str, until: datetime) -> None:
        """Write a denial (already durable) to the revocation cache; should that fail,
        this process rebuilds the cache before its next check, whatever Redis says."""
        try:
            await self._stores.revocation.revoke(token_id, until)
        except Exception:
            self._cache_unsure = True
            raise

    async def restore_revocations(self) -> None:
        """Rebuild the revocation cache from the durable record: at start-up, and when
        the cache lost its data (checks raise ``RevocationCacheColdError`` until then).

        Concurrent callers share one rebuild; expired denial records are purged on the
        way (a bounded sweep).

        Raises:
            ServiceUnavailableError: the cache does not answer (the database's own
                errors propagate): every check keeps failing closed meanwhile.
        """
        seen = self._restores
        async with self._restoring:
            if self._restores != seen and not self._cache_unsure:
                return  # rebuilt while this caller waited
            self._cache_unsure = False
            try:
                await self._stores.revocation.rebuild(self._durable_denials)
            except BaseException:
                self._cache_unsure = True
                raise
            self._restores += 1

    async def _durable_denials(self) -> list[tuple[str, datetime]]:
        now = self._clock.now()
        denials = self._stores.denials
        await denials.purge(now=now)
        # Sessions revoked within the longest lifetime an access token may have had
        # (settings cap it at an hour; the lifetime may have been longer before a restart).
        window = max(self._access.ttl, _LONGEST_ACCESS_TTL) + timedelta(seconds=60)
        sessions = await denials.revoked_sessions(since=now - window)
        return [
            *await denials.denied(now=now),
            *((f"sid:{sid}", revoked_at + window) for sid, revoked_at in sessions),
        ]


_REFUSAL_OUTCOMES = {
    "account disabled": "disabled",
    "account locked": "locked",
    "email not verified": "unverified",
}


def _clip(value: str | None, limit: int = 512) -> str | None:
    return value[:limit] if value else None


def _from_ts(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _revocation_ids(claims: AccessClaims) -> tuple[str, str]:
    """What revokes an access token: its own ``jti``, or its session."""
    return (claims.jti, f"sid:{claims.sid}")
