"""Passwords: sign-up with one, the password login and its brute-force defence, the
hash upgrade on login, the lock after failed logins and its end, the emailed sign-in
link of a locked account, and the password policy.

Every credential failure raises a precise error for logs and events; the web layer
turns them all into one opaque answer (STYLE principle 7).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import Awaitable
from typing import TypeVar

from bastion.accounts._admin import AccountAdmin
from bastion.accounts._emails import normalize_email
from bastion.accounts._hooks import Hook, Hooks
from bastion.accounts._sessions import REFUSAL_OUTCOMES, Sessions, changed_during_sign_in
from bastion.accounts._types import (
    BREACHED_REASON,
    ROLES,
    AccountLocked,
    LockedSignIn,
    Principal,
    Proof,
    TokenPair,
)
from bastion.clock import Clock
from bastion.errors import (
    ConflictError,
    InvalidCredentialsError,
    InvalidTokenError,
    NotFoundError,
    PasswordPolicyError,
    RateLimitedError,
    ServiceUnavailableError,
)
from bastion.events import EventLog, RequestContext
from bastion.net import rate_partition
from bastion.passwords import BreachChecks, PasswordHasher, PasswordPolicy
from bastion.stores import Account, AccountChange, SecurityEvent, Stores
from bastion.throttle import LoginDefence, LoginGate, StoreUnavailableError, Verdict

__all__ = ["PasswordLogin"]

_logger = logging.getLogger("bastion.accounts")
T = TypeVar("T")
# The emailed sign-in link of a locked account: the password, then the mailbox.
_SIGN_IN_LINK = Proof(
    ("pwd",),
    passes_lock=True,
    details="signed in with the emailed sign-in link of a locked account",
)


class PasswordLogin:
    """Everything that checks or sets a password; sessions open through :class:`Sessions`.

    Registration is here and not with the account records: every step of it but the
    insert is about the password (policy, breach check, hash, the timing of a taken
    address). Hooks: :meth:`on_locked`, :meth:`on_locked_sign_in`.
    """

    def __init__(
        self,
        stores: Stores,
        *,
        events: EventLog,
        clock: Clock,
        hasher: PasswordHasher,
        policy: PasswordPolicy,
        sessions: Sessions,
        admin: AccountAdmin,
        defence: LoginDefence | None = None,
        breached: BreachChecks | None = None,
        require_verified_email: bool = False,
    ) -> None:
        self._stores = stores
        self._events = events
        self._clock = clock
        self._hasher = hasher
        self._policy = policy
        self._sessions = sessions
        self._admin = admin
        self._defence = defence
        self._breached = breached
        self._require_verified = require_verified_email
        self._locked = Hooks[AccountLocked]("account locked")
        self._locked_sign_in = Hooks[LockedSignIn]("locked sign-in")

    @property
    def hasher(self) -> PasswordHasher:
        return self._hasher

    @property
    def defence(self) -> LoginDefence | None:
        return self._defence

    def on_locked(self, hook: Hook[AccountLocked]) -> None:
        """Run ``hook`` when failed logins have just locked an account (the account
        lifecycle emails its owner an unlock link)."""
        self._locked.add(hook)

    def on_locked_sign_in(self, hook: Hook[LockedSignIn]) -> None:
        """Run ``hook`` when the right password reaches a locked account from a device
        it does not know (the account lifecycle emails a sign-in link). The login still
        answers as a wrong password, after the hooks."""
        self._locked_sign_in.add(hook)

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

    async def sign_in(
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
        # The lock lets the password through from a device the account knows.
        proof = Proof(("pwd",), passes_lock=bool(gate and gate.trusted))
        # Why an account is refused whatever the password, if it is.
        refusal = self._sessions.refusal(account, proof) if account is not None else ""
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
            REFUSAL_OUTCOMES[refusal]
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
                and (account.email_verified or not self._require_verified)
            ):
                # The right password on a locked account, from a device it does not
                # know: the answer stays that of a wrong password (after the lock, a
                # guess learns nothing), and the owner's mailbox gets a sign-in link.
                await self._locked_sign_in.run(LockedSignIn(account, context))
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
        # With a second factor the defence is settled by the second step: a right
        # password must not clear the failures its code guesses count.
        if defence is not None and gate is not None and not account.mfa_enabled:
            await self._unavailable_is_closed(defence.succeeded(account_key, ip, gate), context)
            device_token = defence.issue_device(
                account_key, defence.credential_generation(account.password_hash)
            )
        pair = await self._sessions.open(account, proof, context=context, user_agent=user_agent)
        return dataclasses.replace(pair, device_token=device_token)

    async def second_step_failed(
        self, account: Account, context: RequestContext, device_cookie: str | None
    ) -> None:
        """A failed proof in a second step (a wrong code, a wrong password in a session)
        counts as a failed login of ``account``: the same
        counters, delays and lock as a wrong password."""
        defence = self._defence
        if defence is None:
            return
        account_key, ip, gate = _second_step(defence, account, context, device_cookie)
        await self._login_failed(defence, account_key, ip, gate, account, context)

    async def second_step_succeeded(
        self, account: Account, context: RequestContext, device_cookie: str | None
    ) -> str | None:
        """The sign-in of ``account`` completed by its second factor: the defence forgets
        its failures and the device gets its cookie (returned), as after a login."""
        defence = self._defence
        if defence is None:
            return None
        account_key, ip, gate = _second_step(defence, account, context, device_cookie)
        await self._unavailable_is_closed(defence.succeeded(account_key, ip, gate), context)
        return defence.issue_device(
            account_key, defence.credential_generation(account.password_hash)
        )

    async def sign_in_confirmed(
        self, account: Account, *, context: RequestContext, user_agent: str | None
    ) -> TokenPair:
        """Open a session for ``account`` whose owner proved the password and then the
        mailbox (the emailed sign-in link of a locked account); the device that followed
        the link gets a device cookie, as after a login.

        Raises:
            InvalidCredentialsError: as :meth:`Sessions.open`.
        """
        pair = await self._sessions.open(
            account, _SIGN_IN_LINK, context=context, user_agent=user_agent
        )
        if self._defence is None:
            return pair
        defence = self._defence
        device_token = defence.issue_device(
            defence.account_key(account.email_key),
            defence.credential_generation(account.password_hash),
        )
        return dataclasses.replace(pair, device_token=device_token)

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
        await self._admin.apply(
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
                return (
                    []
                    if already
                    else [
                        self._events.build(
                            "account_locked",
                            context=context,
                            user_id=str(after.id),
                            details=f"{failures} consecutive failed logins; locked until unlocked",
                        )
                    ]
                )

            locked = await self._admin.apply(
                account.id,
                AccountChange(locked=True, bump_token_version=False, reason="failed logins"),
                lock_event,
            )
            if not already:
                await self._locked.run(AccountLocked(locked, context))
        return outcome.retry_after

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
            await changed_during_sign_in(self._events, account, context)


def _second_step(
    defence: LoginDefence, account: Account, context: RequestContext, device_cookie: str | None
) -> tuple[str, str, LoginGate]:
    """The defence's keys of a second step of ``account``'s sign-in: its account key, the
    client's address partition, and a gate that trusts the device cookie as a login's."""
    account_key = defence.account_key(account.email_key)
    generation = defence.credential_generation(account.password_hash)
    device = defence.device_of(device_cookie, account_key, generation)
    return (
        account_key,
        rate_partition(context.ip_address),
        LoginGate("", device is not None, device),
    )
