"""Store protocols: one small async interface per concern.

Backends are chosen by URL (:func:`bastion.stores.open_stores`): ``memory://``,
``sqlite+aiosqlite://``, ``postgresql+asyncpg://`` and ``redis://``. Every backend of a
protocol passes the same contract suite (``tests/contract``).

Records are plain frozen dataclasses so that no ORM state leaks out of a store.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, get_args
from uuid import UUID

__all__ = [
    "SEVERITIES",
    "Account",
    "AccountChange",
    "AccountStore",
    "AuthSession",
    "Denial",
    "DenialStore",
    "EventPosition",
    "EventQuery",
    "EventStore",
    "EventsFor",
    "ExternalLink",
    "ExternalLinkStore",
    "OneTimeToken",
    "OneTimeTokenStore",
    "RevocationStore",
    "RotateOutcome",
    "SecurityEvent",
    "SessionStore",
    "Severity",
    "TokenUse",
    "UserState",
    "token_spendable",
]

Role = str


@dataclass(frozen=True)
class Account:
    """An identity the core owns: credentials, role and state."""

    id: UUID
    email: str
    email_key: str  # the case-insensitive uniqueness key
    password_hash: str | None
    created_at: datetime
    updated_at: datetime
    display_name: str | None = None
    role: Role = "member"
    is_active: bool = True
    email_verified: bool = False
    mfa_enabled: bool = False
    token_version: int = 0
    locked_at: datetime | None = None  # locked by failed logins until unlocked
    # When the token version last changed: tokens that carry no version (an external
    # issuer's) are refused when issued at or before it.
    tokens_revoked_at: datetime | None = None


@dataclass(frozen=True)
class ExternalLink:
    """An identity at an external sign-in provider (its ``subject`` there), linked to
    the account ``user_id``: each identity once, each account once per provider."""

    provider: str
    subject: str
    user_id: UUID
    email: str | None  # the provider's address when it was linked
    created_at: datetime


@dataclass(frozen=True)
class TOTPFactor:
    """An account's TOTP authenticator: pending until a correct code confirms it."""

    user_id: UUID
    secret: str  # sealed (bastion.mfa.SecretBox), never the secret itself
    created_at: datetime
    confirmed_at: datetime | None = None


@dataclass(frozen=True)
class UserState:
    """What every request checks against a token: cached in the revocation store."""

    token_version: int
    role: Role
    is_active: bool
    # Tokens without a token version (an external issuer's) issued at or before this
    # time (seconds since the epoch) are revoked: the account's tokens_revoked_at.
    revoked_before: int = 0


@dataclass(frozen=True)
class AuthSession:
    """A refresh-token family (one login on one device)."""

    id: UUID
    user_id: UUID
    created_at: datetime
    last_used_at: datetime
    absolute_expires_at: datetime
    ip_address: str | None = None
    user_agent: str | None = None
    revoked_at: datetime | None = None
    revoked_reason: str | None = None
    # How the owner proved who they are when the session opened (RFC 8176 values, space
    # separated); the session's auth_time is its created_at.
    amr: str = ""

    def is_live(self, now: datetime, idle_ttl_seconds: int) -> bool:
        if self.revoked_at is not None or now >= self.absolute_expires_at:
            return False
        return (now - self.last_used_at).total_seconds() < idle_ttl_seconds


@dataclass(frozen=True)
class RotateOutcome:
    """Result of presenting a refresh token.

    ``rotated``: the token was current; it is now used and ``new_digest`` is current.
    ``reused``: the token had already been rotated: the family is now revoked.
    ``unknown``, ``revoked``, ``expired``: refused without side effects.

    ``account`` (when ``rotated``) is the session's account as read in the rotation's
    transaction, after the session was found live: an access token minted from it
    carries a token version no newer than the rotation, so a revocation that commits
    after the rotation (and ends the session) revokes that access token too.
    """

    status: Literal["rotated", "reused", "unknown", "revoked", "expired"]
    session: AuthSession | None = None
    account: Account | None = None


# The severity scale of security events and alerts, lowest first.
Severity = Literal["info", "low", "medium", "high", "critical"]
SEVERITIES: tuple[Severity, ...] = get_args(Severity)


@dataclass(frozen=True)
class SecurityEvent:
    """The contract's security-event shape (API.md, "Security event")."""

    event_type: str
    timestamp: datetime
    severity: Severity = "info"
    user_id: str | None = None
    ip_address: str | None = None
    endpoint: str | None = None
    method: str | None = None
    details: str = ""
    request_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # The store's sequence number, set on the events a store returns: the tie-breaker of
    # the (timestamp, id) order. Not part of the contract's shape, nor of equality.
    id: int | None = field(default=None, compare=False)


# A place in the (timestamp, id) order of stored events: a keyset for pagination.
EventPosition = tuple[datetime, int]


@dataclass(frozen=True)
class EventQuery:
    """Stored events, newest first in (timestamp, id) order, at most ``limit`` of them.

    ``since`` is inclusive and ``until`` exclusive; ``before`` and ``after`` keep only the
    events strictly older or newer than a position (keyset pagination: pages stay stable
    while new events arrive, and equal timestamps are ordered by id).
    """

    event_type: str | None = None
    user_id: str | None = None
    ip_address: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 50
    before: EventPosition | None = None
    after: EventPosition | None = None

    def __post_init__(self) -> None:
        # Every backend refuses the same queries (a negative LIMIT means "all" to SQLite
        # and is an error to PostgreSQL; a naive time has no instant to compare).
        if self.limit < 1:
            raise ValueError("limit must be at least 1")
        moments = [self.since, self.until]
        moments += [p[0] for p in (self.before, self.after) if p is not None]
        if any(m is not None and m.utcoffset() is None for m in moments):
            raise ValueError("times must be timezone-aware")


@dataclass(frozen=True)
class OneTimeToken:
    """A one-time link's token as stored: never the secret, only its SHA-256 digest.

    ``selector`` is the public half of the token and the lookup key; ``digest`` the
    digest of its secret half, compared in constant time (the selector/verifier split
    keeps the comparison out of the database index). ``state`` is a digest of the
    account state the token was issued for (STYLE principle 10).
    """

    selector: str
    digest: str
    purpose: str  # "verify-email", "password-reset", "unlock"
    user_id: UUID
    state: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None


@dataclass(frozen=True)
class TokenUse:
    """Spend a one-time token in the same transaction as the change it authorizes.

    The store refuses the whole change (``InvalidLinkError``) unless the token is unused,
    unexpired, of ``purpose``, for this account, and ``state_of(account)`` still equals the
    state it was issued for.
    """

    selector: str
    purpose: str
    state_of: Callable[[Account], str]


def token_spendable(
    token: OneTimeToken | None, use: TokenUse, account: Account, now: datetime
) -> bool:
    """Whether ``use`` may spend ``token`` for ``account`` now: every backend's one rule."""
    return (
        token is not None
        and token.used_at is None
        and token.expires_at > now
        and token.purpose == use.purpose
        and token.user_id == account.id
        and token.state == use.state_of(account)
    )


@dataclass(frozen=True)
class AccountChange:
    """A change of an account's standing, applied atomically with its security events.

    ``revoke_sessions`` ends every session (but ``keep_session``) and bumps the token
    version, which revokes every access token of the account at once. A change of the
    role or the active flag bumps it too (``bump_token_version``): access tokens never
    outlive the standing they were issued for, and the version orders cached states.
    """

    role: Role | None = None
    is_active: bool | None = None
    revoke_sessions: bool = False
    keep_session: UUID | None = None
    bump_token_version: bool = True  # when the role or active flag changes
    locked: bool | None = None  # lock (failed logins) or unlock; sessions stay
    password_hash: str | None = None  # a new password (with ``revoke_sessions``)
    email_verified: bool | None = None
    use_token: TokenUse | None = None  # the one-time token this change spends
    # Refuse the change (InvalidTokenError) unless the account's token version is still
    # this one: a change authorized by a session must not land after a revocation.
    expect_token_version: int | None = None
    # Refuse the change (InvalidTokenError) unless the password hash is still this one:
    # a change justified by a password checked earlier must not land after a new one.
    expect_password_hash: str | None = None
    reason: str = "account change"

    @property
    def may_remove_admin(self) -> bool:
        return (self.role is not None and self.role != "admin") or self.is_active is False


# Builds the events of a change from the account before and after it, inside the
# change's transaction (so that an event is stored exactly when its change is).
EventsFor = Callable[[Account, Account], Sequence[SecurityEvent]]


class AccountStore(Protocol):
    async def add(self, account: Account) -> None:
        """Store a new account; raise ConflictError when ``email_key`` is taken."""
        ...

    async def page(
        self,
        *,
        limit: int,
        after: tuple[datetime, UUID] | None = None,
        role: Role | None = None,
        is_active: bool | None = None,
    ) -> list[Account]:
        """Accounts oldest first, ordered by (created_at, id), those after ``after``."""
        ...

    async def change(
        self, account_id: UUID, change: AccountChange, *, now: datetime, events: EventsFor
    ) -> Account:
        """Apply ``change`` and store ``events(before, after)`` in one transaction.

        Raises:
            NotFoundError: no such account.
            LastAdminError: the change would leave no active admin (checked under a
                lock, so two admins demoting each other at once cannot both succeed).
        """
        ...

    async def resolve_id(self, email_key: str, *, reserve: bool) -> tuple[UUID, bool] | None:
        """The id of the account with this email and True, or the id reserved for it
        and False; None when there is neither and not ``reserve``.

        With ``reserve``, an email without account or reservation gets a reserved id,
        which the account takes when the email registers: a share with an address that
        has no account yet looks exactly like one with an address that has one.
        """
        ...

    async def get(self, account_id: UUID) -> Account | None: ...

    async def get_by_email(self, email_key: str) -> Account | None: ...

    async def update(self, account_id: UUID, **changes: Any) -> Account | None:
        """Change the named fields (and ``updated_at``); None when there is no such account."""
        ...

    async def bump_token_version(self, account_id: UUID, *, now: datetime) -> int:
        """Atomically increment and return the token version (revokes every access
        token; ``now`` becomes ``tokens_revoked_at``, for tokens without a version)."""
        ...


class MFAStore(Protocol):
    """Second factors: an account's TOTP factor and its recovery codes (as digests)."""

    async def factor(self, user_id: UUID) -> TOTPFactor | None: ...

    async def begin(self, factor: TOTPFactor) -> bool:
        """Store a pending factor, replacing a pending one; False (nothing stored) when
        the account has a confirmed factor."""
        ...

    async def confirm(
        self, user_id: UUID, *, secret: str, now: datetime, recovery_digests: Sequence[str]
    ) -> bool:
        """Confirm the pending factor whose sealed secret is still ``secret`` (not
        replaced by another setup meanwhile), replace the recovery codes and set the
        account's ``mfa_enabled``, in one transaction; False when there is no such
        pending factor."""
        ...

    async def remove(self, user_id: UUID) -> bool:
        """Delete the factor and the recovery codes and clear ``mfa_enabled``, in one
        transaction; False when there was no factor."""
        ...

    async def use_recovery_code(self, user_id: UUID, digest: str, *, now: datetime) -> bool:
        """Spend an unused recovery code: True once, whoever else tries it at once."""
        ...

    async def has_recovery_code(self, user_id: UUID, digest: str) -> bool:
        """Whether an unused recovery code has this digest (nothing is spent)."""
        ...

    async def replace_recovery_codes(self, user_id: UUID, digests: Sequence[str]) -> None: ...

    async def recovery_codes_left(self, user_id: UUID) -> int: ...


class ExternalLinkStore(Protocol):
    async def find(self, provider: str, subject: str) -> ExternalLink | None: ...

    async def of_user(self, user_id: UUID) -> list[ExternalLink]:
        """The account's links, oldest first."""
        ...

    async def add(self, link: ExternalLink) -> None:
        """Store ``link``; raise ConflictError when the identity is linked already (to
        any account) or the account has an identity of that provider."""
        ...

    async def add_with_account(self, account: Account, link: ExternalLink) -> bool:
        """Store a new account and its identity ``link`` in one transaction; False, and
        nothing stored, when the account (its id or email key) or the identity exists."""
        ...

    async def remove(self, user_id: UUID, provider: str) -> bool:
        """Unlink the account's identity at ``provider``; False when it had none."""
        ...


class SessionStore(Protocol):
    async def create(
        self, session: AuthSession, token_digest: str, *, expect: Account | None = None
    ) -> bool:
        """Store a new session and its first refresh token; True when stored.

        With ``expect`` (the account as read before its password was checked), only if
        the account is still active at the token version and with the password hash of
        ``expect``, checked in the transaction of the insert: False, and nothing stored,
        when a password change, reset or revocation committed since. A change that
        commits after this one ends the new session with the others.
        """
        ...

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
        """Atomic compare-and-set: of two concurrent calls with one digest, one rotates.

        The rotation commits only while the session is not revoked (a revocation that
        commits first wins: ``revoked``), and reads the account in the same transaction
        (:attr:`RotateOutcome.account`)."""
        ...

    async def get(self, session_id: UUID) -> AuthSession | None: ...

    async def find_by_token(self, digest: str) -> AuthSession | None: ...

    async def list_live(
        self, user_id: UUID, *, now: datetime, idle_ttl_seconds: int
    ) -> list[AuthSession]: ...

    async def revoke(self, session_id: UUID, *, now: datetime, reason: str) -> bool: ...

    async def revoke_all(
        self, user_id: UUID, *, now: datetime, reason: str, keep: UUID | None = None
    ) -> int: ...


class OneTimeTokenStore(Protocol):
    """One-time link tokens. Spending one is part of an account change (``TokenUse``)."""

    async def issue(self, token: OneTimeToken) -> None:
        """Store ``token``; every other unused token of its account and purpose dies (a
        newer link replaces the older), and expired tokens are purged."""
        ...

    async def get(self, selector: str) -> OneTimeToken | None: ...


# A denied token id (an access token's ``jti``, or ``sid:<session id>``) and the moment
# every token carrying it has expired.
Denial = tuple[str, datetime]


class DenialStore(Protocol):
    """The durable record of revocations, from which the revocation cache is rebuilt.

    A session's revocation is recorded by the session store itself (its ``revoked_at``,
    written in the transaction that ends the session); an access token denied by its
    ``jti`` is recorded here. User-wide revocations are the account's token version.
    """

    async def deny(self, token_id: str, expires_at: datetime, *, now: datetime) -> None:
        """Record that ``token_id`` is denied until ``expires_at``; expired records are
        purged on the way (a bounded sweep)."""
        ...

    async def denied(self, *, now: datetime) -> list[Denial]:
        """Every recorded denial that has not expired at ``now``."""
        ...

    async def revoked_sessions(self, *, since: datetime) -> list[tuple[UUID, datetime]]:
        """The id and revocation time of every session revoked after ``since``."""
        ...

    async def purge(self, *, now: datetime, limit: int = 1000) -> int:
        """Delete at most ``limit`` denials expired at ``now``; return how many."""
        ...


class RevocationStore(Protocol):
    """Per-request revocation state, shared by every instance when backed by Redis.

    A cache: the durable record is the database (:class:`DenialStore`, the sessions, the
    accounts' token versions). Until :meth:`rebuild` has filled it, and again whenever
    it has lost its data (Redis emptied, evicted or failed over), :meth:`check` raises
    ``RevocationCacheColdError`` rather than answer "not revoked".
    """

    async def check(self, user_id: str, token_ids: Sequence[str]) -> tuple[UserState | None, bool]:
        """The cached user state (None on a miss) and whether any of ``token_ids`` (a
        token's ``jti``, its session id) is revoked: one round trip.

        Raises:
            RevocationCacheColdError: the cache is not known to hold every denial.
            ServiceUnavailableError: the store does not answer.
        """
        ...

    async def rebuild(self, read: Callable[[], Awaitable[Sequence[Denial]]]) -> None:
        """Fill the cache with ``read()``'s denials (every unexpired one in the durable
        record), then mark it complete: from then on :meth:`check` answers. A loss of
        the cache's data while it is rebuilt is detected (the rebuild starts again).

        Raises:
            ServiceUnavailableError: the store does not answer, or kept losing its data.
        """
        ...

    async def put_user_state(self, user_id: str, state: UserState) -> None:
        """Cache ``state``, unless the cached one has a higher token version.

        Every change of an account's standing bumps its token version, so a write from
        a request that read the account before the change (a login in its hash verify)
        can never replace the state written after it: a compare-and-set, atomic on Redis.
        """
        ...

    async def forget_user_state(self, user_id: str) -> None:
        """Drop the cached state: the next request reads the account from the database."""
        ...

    async def revoke(self, token_id: str, expires_at: datetime) -> None:
        """Deny ``token_id`` until ``expires_at`` (when every token carrying it has expired).

        Only after the denial is in the durable record. Should the write fail, the cache
        is marked incomplete where it still answers (the next check rebuilds it), and
        ``ServiceUnavailableError`` is raised.
        """
        ...

    async def ping(self) -> bool: ...

    async def aclose(self) -> None: ...


class EventStore(Protocol):
    async def append(self, events: Sequence[SecurityEvent]) -> None:
        """Store ``events`` (their ``id`` is ignored: the store numbers them)."""
        ...

    async def query(self, query: EventQuery) -> list[SecurityEvent]:
        """The events matching ``query``, newest first by (timestamp, id), with ``id`` set."""
        ...
