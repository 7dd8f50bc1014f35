"""In-process stores: the embedded default for revocation state, and test doubles' equal.

They keep everything in dictionaries of one process: with several workers or
instances, use Redis for revocation state (every instance must see a logout at once).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from bastion.errors import (
    ConflictError,
    InvalidLinkError,
    InvalidTokenError,
    LastAdminError,
    NotFoundError,
    RevocationCacheColdError,
)
from bastion.stores.base import (
    Account,
    AccountChange,
    AuthSession,
    Denial,
    EventPosition,
    EventQuery,
    EventsFor,
    ExternalLink,
    OneTimeToken,
    RotateOutcome,
    SecurityEvent,
    TokenUse,
    TOTPFactor,
    UserState,
    token_spendable,
)

__all__ = [
    "MemoryAccountStore",
    "MemoryDenialStore",
    "MemoryEventStore",
    "MemoryExternalLinkStore",
    "MemoryMFAStore",
    "MemoryOneTimeTokenStore",
    "MemoryRevocationStore",
    "MemorySessionStore",
]

_ACCOUNT_FIELDS = {f.name for f in dataclasses.fields(Account)} - {"id", "created_at"}


class MemoryAccountStore:
    """Accounts in a dictionary; ``change`` also revokes sessions in ``sessions`` and
    appends its events to ``events`` (the stores of the same ``open_stores`` call)."""

    def __init__(
        self,
        sessions: MemorySessionStore | None = None,
        events: MemoryEventStore | None = None,
        tokens: MemoryOneTimeTokenStore | None = None,
    ) -> None:
        self._by_id: dict[UUID, Account] = {}
        self._reserved: dict[str, UUID] = {}
        self._sessions = sessions or MemorySessionStore()
        self._events = events or MemoryEventStore()
        self._tokens = tokens or MemoryOneTimeTokenStore()
        self._sessions.accounts = self._by_id  # its conditional inserts read them

    def _check_free(self, email_key: str, owner: UUID | None = None) -> None:
        """Raise ConflictError when another account than ``owner`` holds ``email_key``."""
        if any(a.email_key == email_key and a.id != owner for a in self._by_id.values()):
            raise ConflictError("email already registered")

    async def add(self, account: Account) -> None:
        self._check_free(account.email_key)
        self._by_id[account.id] = account

    async def get(self, account_id: UUID) -> Account | None:
        return self._by_id.get(account_id)

    async def get_by_email(self, email_key: str) -> Account | None:
        return next((a for a in self._by_id.values() if a.email_key == email_key), None)

    async def update(self, account_id: UUID, **changes: Any) -> Account | None:
        unknown = set(changes) - _ACCOUNT_FIELDS
        if unknown:
            raise ValueError(f"not account fields: {sorted(unknown)}")
        current = self._by_id.get(account_id)
        if current is None:
            return None
        if "email_key" in changes:
            self._check_free(changes["email_key"], account_id)
        changes.setdefault("updated_at", datetime.now(UTC))
        self._by_id[account_id] = updated = dataclasses.replace(current, **changes)
        return updated

    async def page(
        self,
        *,
        limit: int,
        after: tuple[datetime, UUID] | None = None,
        role: str | None = None,
        is_active: bool | None = None,
    ) -> list[Account]:
        ordered = sorted(self._by_id.values(), key=lambda a: (a.created_at, a.id))
        return [
            a
            for a in ordered
            if (after is None or (a.created_at, a.id) > after)
            and (role is None or a.role == role)
            and (is_active is None or a.is_active == is_active)
        ][:limit]

    async def change(
        self, account_id: UUID, change: AccountChange, *, now: datetime, events: EventsFor
    ) -> Account:
        # No await before the last check: the whole change is atomic on the event loop.
        before = self._by_id.get(account_id)
        if before is None:
            raise NotFoundError("no such account")
        expected = change.expect_token_version
        if expected is not None and before.token_version != expected:
            raise InvalidTokenError("token version revoked during the change")
        if change.expect_password_hash not in (None, before.password_hash):
            raise InvalidTokenError("password changed during the change")
        after = dataclasses.replace(
            before,
            role=before.role if change.role is None else change.role,
            is_active=before.is_active if change.is_active is None else change.is_active,
        )
        admins = [a.id for a in self._by_id.values() if a.role == "admin" and a.is_active]
        stays_admin = after.role == "admin" and after.is_active
        if before.id in admins and not stays_admin and len(admins) <= 1:
            raise LastAdminError("the last active admin cannot be demoted or disabled")
        if change.revoke_sessions or (change.bump_token_version and after != before):
            after = dataclasses.replace(
                after, token_version=before.token_version + 1, tokens_revoked_at=now
            )
        if change.locked is not None and change.locked != (before.locked_at is not None):
            after = dataclasses.replace(after, locked_at=now if change.locked else None)
        if change.password_hash is not None:
            after = dataclasses.replace(after, password_hash=change.password_hash)
        if change.email_verified is not None:
            after = dataclasses.replace(after, email_verified=change.email_verified)
        if after != before:
            after = dataclasses.replace(after, updated_at=now)
        new_events = events(before, after)
        if change.use_token is not None:
            self._tokens.spend(change.use_token, before, now)
        if change.revoke_sessions:
            self._sessions.revoke_all_now(
                account_id, now=now, reason=change.reason, keep=change.keep_session
            )
        self._by_id[account_id] = after
        self._events.events.extend(new_events)
        return after

    async def resolve_id(self, email_key: str, *, reserve: bool) -> tuple[UUID, bool] | None:
        account = await self.get_by_email(email_key)
        if account is not None:
            return account.id, True
        if reserve:
            return self._reserved.setdefault(email_key, uuid.uuid4()), False
        reserved = self._reserved.get(email_key)
        return (reserved, False) if reserved else None

    async def bump_token_version(self, account_id: UUID, *, now: datetime) -> int:
        current = self._by_id[account_id]
        self._by_id[account_id] = dataclasses.replace(
            current, token_version=current.token_version + 1, tokens_revoked_at=now
        )
        return current.token_version + 1


class MemoryOneTimeTokenStore:
    def __init__(self) -> None:
        self._tokens: dict[str, OneTimeToken] = {}

    async def issue(self, token: OneTimeToken) -> None:
        self._tokens = {
            selector: held
            for selector, held in self._tokens.items()
            if held.expires_at > token.created_at
            and not (
                held.user_id == token.user_id
                and held.purpose == token.purpose
                and held.used_at is None
            )
        }
        self._tokens[token.selector] = token

    async def get(self, selector: str) -> OneTimeToken | None:
        return self._tokens.get(selector)

    def spend(self, use: TokenUse, account: Account, now: datetime) -> None:
        """Mark the token used, or raise InvalidLinkError (see :class:`TokenUse`)."""
        held = self._tokens.get(use.selector)
        if not token_spendable(held, use, account, now):
            raise InvalidLinkError("one-time token not usable")
        assert held is not None
        self._tokens[use.selector] = dataclasses.replace(held, used_at=now)


class MemorySessionStore:
    """Sessions in dictionaries. ``accounts`` are the accounts of the same
    ``open_stores`` call (set by :class:`MemoryAccountStore`): a conditional insert and
    a rotation read them without awaiting, so each is atomic with every account change
    (which never awaits either)."""

    def __init__(self) -> None:
        self._sessions: dict[UUID, AuthSession] = {}
        self._tokens: dict[str, tuple[UUID, bool]] = {}  # digest -> (session id, used)
        self._lock = asyncio.Lock()
        self.accounts: dict[UUID, Account] = {}

    async def create(
        self, session: AuthSession, token_digest: str, *, expect: Account | None = None
    ) -> bool:
        if expect is not None:
            current = self.accounts.get(expect.id)
            if (
                current is None
                or not current.is_active
                or current.token_version != expect.token_version
                or current.password_hash != expect.password_hash
            ):
                return False
        self._sessions[session.id] = session
        self._tokens[token_digest] = (session.id, False)
        return True

    async def rotate(
        self,
        old_digest: str,
        new_digest: str,
        *,
        now: datetime,
        idle_ttl_seconds: int,
        ip_address: str | None,
        user_agent: str | None,
    ) -> RotateOutcome:
        async with self._lock:
            entry = self._tokens.get(old_digest)
            if entry is None:
                return RotateOutcome("unknown")
            session_id, used = entry
            session = self._sessions[session_id]
            if session.revoked_at is not None:
                return RotateOutcome("revoked", session)
            if used:
                revoked = dataclasses.replace(
                    session, revoked_at=now, revoked_reason="refresh token reuse"
                )
                self._sessions[session_id] = revoked
                return RotateOutcome("reused", revoked)
            if not session.is_live(now, idle_ttl_seconds):
                return RotateOutcome("expired", session)
            self._tokens[old_digest] = (session_id, True)
            self._tokens[new_digest] = (session_id, False)
            session = dataclasses.replace(
                session, last_used_at=now, ip_address=ip_address, user_agent=user_agent
            )
            self._sessions[session_id] = session
            return RotateOutcome("rotated", session, self.accounts.get(session.user_id))

    async def get(self, session_id: UUID) -> AuthSession | None:
        return self._sessions.get(session_id)

    async def find_by_token(self, digest: str) -> AuthSession | None:
        entry = self._tokens.get(digest)
        return self._sessions.get(entry[0]) if entry else None

    async def list_live(
        self, user_id: UUID, *, now: datetime, idle_ttl_seconds: int
    ) -> list[AuthSession]:
        live = [
            s
            for s in self._sessions.values()
            if s.user_id == user_id and s.is_live(now, idle_ttl_seconds)
        ]
        return sorted(live, key=lambda s: s.created_at, reverse=True)

    async def revoke(self, session_id: UUID, *, now: datetime, reason: str) -> bool:
        session = self._sessions.get(session_id)
        if session is None or session.revoked_at is not None:
            return False
        self._sessions[session_id] = dataclasses.replace(
            session, revoked_at=now, revoked_reason=reason
        )
        return True

    async def revoke_all(
        self, user_id: UUID, *, now: datetime, reason: str, keep: UUID | None = None
    ) -> int:
        return self.revoke_all_now(user_id, now=now, reason=reason, keep=keep)

    def revoked_since(self, since: datetime) -> list[tuple[UUID, datetime]]:
        return [
            (s.id, s.revoked_at)
            for s in self._sessions.values()
            if s.revoked_at is not None and s.revoked_at > since
        ]

    def revoke_all_now(
        self, user_id: UUID, *, now: datetime, reason: str, keep: UUID | None = None
    ) -> int:
        ids = [
            s.id
            for s in self._sessions.values()
            if s.user_id == user_id and s.revoked_at is None and s.id != keep
        ]
        for session_id in ids:
            self._sessions[session_id] = dataclasses.replace(
                self._sessions[session_id], revoked_at=now, revoked_reason=reason
            )
        return len(ids)


class MemoryRevocationStore:
    """Revocation state of one process.

    Cached user states expire after ``state_ttl_seconds``, so a change made through
    another process (a command run against the same database) reaches this one within
    that bound; several workers must share Redis instead (``bastion serve`` refuses
    ``--workers`` above 1 without it).
    """

    def __init__(self, *, state_ttl_seconds: float = 60.0) -> None:
        self._users: dict[str, tuple[UserState, float]] = {}
        self._denied: dict[str, datetime] = {}
        self._ttl = state_ttl_seconds
        self._complete = False  # filled from the durable record (rebuild)

    async def check(self, user_id: str, token_ids: Sequence[str]) -> tuple[UserState | None, bool]:
        if not self._complete:
            # A new process knows no denial yet: the database does (DenialStore).
            raise RevocationCacheColdError("revocation cache not rebuilt yet")
        now = datetime.now(UTC)
        revoked = any(
            (expires := self._denied.get(token_id)) is not None and expires > now
            for token_id in token_ids
        )
        cached = self._users.get(user_id)
        if cached is None or cached[1] <= time.monotonic():
            return None, revoked
        return cached[0], revoked

    async def put_user_state(self, user_id: str, state: UserState) -> None:
        cached = self._users.get(user_id)
        if cached is not None and cached[0].token_version > state.token_version:
            return  # a newer state is cached: this write comes from before a change
        self._users[user_id] = (state, time.monotonic() + self._ttl)
        if len(self._users) > 100_000:  # bound memory: drop expired entries
            now = time.monotonic()
            for key in [k for k, (_, until) in self._users.items() if until <= now]:
                del self._users[key]

    async def forget_user_state(self, user_id: str) -> None:
        self._users.pop(user_id, None)

    async def revoke(self, token_id: str, expires_at: datetime) -> None:
        self._denied[token_id] = expires_at
        if len(self._denied) > 10_000:  # bound memory: drop entries whose tokens expired anyway
            now = datetime.now(UTC)
            for key in [k for k, v in self._denied.items() if v <= now]:
                del self._denied[key]

    async def rebuild(self, read: Callable[[], Awaitable[Sequence[Denial]]]) -> None:
        for token_id, expires_at in await read():
            if self._denied.get(token_id, expires_at) <= expires_at:
                self._denied[token_id] = expires_at
        self._complete = True

    async def ping(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None


class MemoryDenialStore:
    """The durable record of one process (``memory://``): gone with the process, as
    everything else a memory store holds. ``sessions`` is the session store whose
    revoked sessions it reports."""

    def __init__(self, sessions: MemorySessionStore | None = None) -> None:
        self._sessions = sessions or MemorySessionStore()
        self._denied: dict[str, datetime] = {}

    async def deny(self, token_id: str, expires_at: datetime, *, now: datetime) -> None:
        await self.purge(now=now, limit=100)
        self._denied[token_id] = max(expires_at, self._denied.get(token_id, expires_at))

    async def denied(self, *, now: datetime) -> list[Denial]:
        return [(token_id, until) for token_id, until in self._denied.items() if until > now]

    async def revoked_sessions(self, *, since: datetime) -> list[tuple[UUID, datetime]]:
        return self._sessions.revoked_since(since)

    async def purge(self, *, now: datetime, limit: int = 1000) -> int:
        expired = [token_id for token_id, until in self._denied.items() if until <= now]
        for token_id in expired[:limit]:
            del self._denied[token_id]
        return min(len(expired), limit)


class MemoryExternalLinkStore:
    def __init__(self, accounts: MemoryAccountStore | None = None) -> None:
        self._links: dict[tuple[str, str], ExternalLink] = {}
        self.accounts = accounts  # for add_with_account (set by the Stores it is in)

    async def find(self, provider: str, subject: str) -> ExternalLink | None:
        return self._links.get((provider, subject))

    async def of_user(self, user_id: UUID) -> list[ExternalLink]:
        mine = [link for link in self._links.values() if link.user_id == user_id]
        return sorted(mine, key=lambda link: link.created_at)

    async def add(self, link: ExternalLink) -> None:
        if (link.provider, link.subject) in self._links or any(
            other.user_id == link.user_id and other.provider == link.provider
            for other in self._links.values()
        ):
            raise ConflictError("identity already linked")
        self._links[(link.provider, link.subject)] = link

    async def add_with_account(self, account: Account, link: ExternalLink) -> bool:
        accounts = self.accounts
        if accounts is None:
            raise RuntimeError("this link store has no account store")
        taken = account.id in accounts._by_id or any(
            a.email_key == account.email_key for a in accounts._by_id.values()
        )
        if taken or (link.provider, link.subject) in self._links:
            return False
        accounts._by_id[account.id] = account  # no await between the checks and here
        self._links[(link.provider, link.subject)] = link
        return True

    async def remove(self, user_id: UUID, provider: str) -> bool:
        for key, link in list(self._links.items()):
            if link.user_id == user_id and link.provider == provider:
                del self._links[key]
                return True
        return False


class MemoryEventStore:
    def __init__(self) -> None:
        self.events: list[SecurityEvent] = []

    async def append(self, events: Sequence[SecurityEvent]) -> None:
        self.events.extend(events)

    async def query(self, query: EventQuery) -> list[SecurityEvent]:
        """An event's id is its place in ``events`` (counted from 1), as a sequence would
        number it in SQL; newest first by (timestamp, id)."""

        def keep(e: SecurityEvent, position: EventPosition) -> bool:
            return (
                (query.event_type is None or e.event_type == query.event_type)
                and (query.user_id is None or e.user_id == query.user_id)
                and (query.ip_address is None or e.ip_address == query.ip_address)
                and (query.since is None or e.timestamp >= query.since)
                and (query.until is None or e.timestamp < query.until)
                and (query.before is None or position < query.before)
                and (query.after is None or position > query.after)
            )

        matching = [
            ((e.timestamp, number), e)
            for number, e in enumerate(self.events, start=1)
            if keep(e, (e.timestamp, number))
        ]
        matching.sort(key=lambda found: found[0], reverse=True)
        return [dataclasses.replace(e, id=p[1]) for p, e in matching[: query.limit]]


class MemoryMFAStore:
    """Second factors in dictionaries; ``mfa_enabled`` is set on ``accounts``' records."""

    def __init__(self, accounts: MemoryAccountStore) -> None:
        self._accounts = accounts
        self._factors: dict[UUID, TOTPFactor] = {}
        self._codes: dict[UUID, dict[str, datetime | None]] = {}

    async def factor(self, user_id: UUID) -> TOTPFactor | None:
        return self._factors.get(user_id)

    async def begin(self, factor: TOTPFactor) -> bool:
        current = self._factors.get(factor.user_id)
        if current is not None and current.confirmed_at is not None:
            return False
        self._factors[factor.user_id] = factor
        return True

    async def confirm(
        self, user_id: UUID, *, secret: str, now: datetime, recovery_digests: Sequence[str]
    ) -> bool:
        current = self._factors.get(user_id)
        account = self._accounts._by_id.get(user_id)
        if current is None or current.confirmed_at is not None or current.secret != secret:
            return False
        if account is None:
            return False
        self._factors[user_id] = dataclasses.replace(current, confirmed_at=now)
        self._codes[user_id] = dict.fromkeys(recovery_digests)
        self._accounts._by_id[user_id] = dataclasses.replace(
            account, mfa_enabled=True, updated_at=now
        )
        return True

    async def remove(self, user_id: UUID) -> bool:
        removed = self._factors.pop(user_id, None)
        self._codes.pop(user_id, None)
        account = self._accounts._by_id.get(user_id)
        if account is not None and account.mfa_enabled:
            self._accounts._by_id[user_id] = dataclasses.replace(account, mfa_enabled=False)
        return removed is not None

    async def use_recovery_code(self, user_id: UUID, digest: str, *, now: datetime) -> bool:
        codes = self._codes.get(user_id, {})
        if digest not in codes or codes[digest] is not None:
            return False
        codes[digest] = now
        return True

    async def has_recovery_code(self, user_id: UUID, digest: str) -> bool:
        codes = self._codes.get(user_id, {})
        return digest in codes and codes[digest] is None

    async def replace_recovery_codes(self, user_id: UUID, digests: Sequence[str]) -> None:
        self._codes[user_id] = dict.fromkeys(digests)

    async def recovery_codes_left(self, user_id: UUID) -> int:
        return sum(1 for used in self._codes.get(user_id, {}).values() if used is None)
