"""SQL implementations of the account, session and event stores."""

from __future__ import annotations

import dataclasses
import hmac
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from bastion.errors import (
    ConflictError,
    DatabaseUnavailableError,
    InvalidLinkError,
    InvalidTokenError,
    LastAdminError,
    NotFoundError,
)
from bastion.events.chain import (
    CHAINED_FIELDS,
    GENESIS,
    ChainBrokenError,
    ChainHead,
    Checkpoint,
    checkpoint_mac,
    link_mac,
)
from bastion.stores.base import (
    Account,
    AccountChange,
    AuthSession,
    EventPosition,
    EventQuery,
    EventsFor,
    OneTimeToken,
    RotateOutcome,
    SecurityEvent,
    TokenUse,
    token_spendable,
)
from bastion.stores.sql.chain import EventChain
from bastion.stores.sql.chain import lock_chain as _lock_chain
from bastion.stores.sql.engine import write_locking
from bastion.stores.sql.outage import unavailable
from bastion.stores.sql.tables import (
    AccountReservationRow,
    AccountRow,
    AuthSessionRow,
    OneTimeTokenRow,
    RefreshTokenRow,
    SecurityEventCheckpointRow,
    SecurityEventRow,
)

__all__ = ["SQLAccountStore", "SQLEventStore", "SQLOneTimeTokenStore", "SQLSessionStore"]

_ACCOUNT_FIELDS = [f.name for f in dataclasses.fields(Account)]
_SESSION_FIELDS = [f.name for f in dataclasses.fields(AuthSession)]
_EVENT_FIELDS = [f.name for f in dataclasses.fields(SecurityEvent)]

_accounts = AccountRow.__table__  # type: ignore[attr-defined]
_sessions = AuthSessionRow.__table__  # type: ignore[attr-defined]
_tokens = RefreshTokenRow.__table__  # type: ignore[attr-defined]
_events = SecurityEventRow.__table__  # type: ignore[attr-defined]
_checkpoints = SecurityEventCheckpointRow.__table__  # type: ignore[attr-defined]
_reservations = AccountReservationRow.__table__  # type: ignore[attr-defined]
_one_time = OneTimeTokenRow.__table__  # type: ignore[attr-defined]
_ONE_TIME_FIELDS = [f.name for f in dataclasses.fields(OneTimeToken)]


def _account(row: Any) -> Account:
    return Account(**{name: getattr(row, name) for name in _ACCOUNT_FIELDS})


def _session(row: Any) -> AuthSession:
    return AuthSession(**{name: getattr(row, name) for name in _SESSION_FIELDS})


def _event_row(event: SecurityEvent) -> dict[str, Any]:
    row = {name: getattr(event, name) for name in _EVENT_FIELDS if name != "id"}
    # Only JSON goes into the column: anything else is stored as its text.
    row["extra"] = json.loads(json.dumps(event.extra, default=str))
    return row


async def _insert_events(
    conn: Any, events: Sequence[SecurityEvent], chain: EventChain | None = None
) -> ChainHead | None:
    """Insert ``events``; with ``chain``, chain them (:mod:`bastion.stores.sql.chain`) and
    return the head they make, for the caller to publish once its transaction committed
    (``await chain.committed(head)``)."""
    if not events:
        return None
    rows = [_event_row(e) for e in events]
    if chain is None:
        await conn.execute(_events.insert(), rows)
        return None
    return await chain.append(conn, rows)


async def _published(chain: EventChain | None, head: ChainHead | None) -> None:
    if chain is not None and head is not None:
        await chain.committed(head)


class _SQLStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine


async def _one_time_token(conn: Any, selector: str) -> OneTimeToken | None:
    query = _one_time.select().where(_one_time.c.selector == selector)
    row = (await conn.execute(query)).first()
    return OneTimeToken(**{name: getattr(row, name) for name in _ONE_TIME_FIELDS}) if row else None


async def _spend(conn: Any, use: TokenUse, account: Account, now: datetime) -> None:
    """Mark the token used inside the change's transaction, or raise InvalidLinkError.

    The conditional UPDATE is the compare-and-set: of two concurrent spends of one
    token, one updates a row and the other none (and rolls its change back)."""
    token = await _one_time_token(conn, use.selector)
    if not token_spendable(token, use, account, now):
        raise InvalidLinkError("one-time token not usable")
    spent = await conn.execute(
        _one_time.update()
        .where(_one_time.c.selector == use.selector, _one_time.c.used_at.is_(None))
        .values(used_at=now)
    )
    if spent.rowcount != 1:
        raise InvalidLinkError("one-time token spent concurrently")


async def _still_as(conn: Any, expect: Account) -> bool:
    """Whether the account is still active at the token version and with the password
    hash of ``expect``, and stays so until the transaction ends.

    PostgreSQL reads the row ``FOR SHARE``: a change (which locks it ``FOR UPDATE``)
    already under way is waited for and its result read; one that starts later waits
    for this transaction, and then ends the session it inserted with the others. On
    SQLite the transaction began with ``BEGIN IMMEDIATE`` and holds the write lock.
    """
    query = sa.select(
        _accounts.c.token_version, _accounts.c.password_hash, _accounts.c.is_active
    ).where(_accounts.c.id == expect.id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(read=True)
    row = (await conn.execute(query)).first()
    return (
        row is not None
        and row.is_active
        and row.token_version == expect.token_version
        and row.password_hash == expect.password_hash
    )


class SQLOneTimeTokenStore(_SQLStore):
    async def issue(self, token: OneTimeToken) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                _one_time.delete().where(
                    sa.or_(
                        _one_time.c.expires_at <= token.created_at,
                        sa.and_(
                            _one_time.c.user_id == token.user_id,
                            _one_time.c.purpose == token.purpose,
                            _one_time.c.used_at.is_(None),
                        ),
                    )
                )
            )
            await conn.execute(_one_time.insert().values(**dataclasses.asdict(token)))

    async def get(self, selector: str) -> OneTimeToken | None:
        async with self._engine.connect() as conn:
            return await _one_time_token(conn, selector)


def _chain_of(chain: EventChain | None, chain_key: bytes | None) -> EventChain | None:
    """The event chain a store writes through: ``chain`` (shared, so that one head is
    published), else one made from ``chain_key``, else none."""
    return chain or (EventChain(chain_key) if chain_key is not None else None)


class SQLAccountStore(_SQLStore):
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        chain_key: bytes | None = None,
        chain: EventChain | None = None,
    ) -> None:
        """``chain`` (or a ``chain_key`` to make one): the event chain, for the events a
        change stores (the event store's own, so that both publish one head)."""
        super().__init__(engine)
        self._locking_engine = write_locking(engine)
        self._chain = _chain_of(chain, chain_key)

    async def page(
        self,
        *,
        limit: int,
        after: tuple[datetime, UUID] | None = None,
        role: str | None = None,
        is_active: bool | None = None,
    ) -> list[Account]:
        query = _accounts.select()
        if after is not None:
            created_at, account_id = after
            query = query.where(
                sa.or_(
                    _accounts.c.created_at > created_at,
                    sa.and_(_accounts.c.created_at == created_at, _accounts.c.id > account_id),
                )
            )
        if role is not None:
            query = query.where(_accounts.c.role == role)
        if is_active is not None:
            query = query.where(_accounts.c.is_active == is_active)
        query = query.order_by(_accounts.c.created_at, _accounts.c.id).limit(limit)
        async with self._engine.connect() as conn:
            return [_account(row) for row in await conn.execute(query)]

    async def change(
        self, account_id: UUID, change: AccountChange, *, now: datetime, events: EventsFor
    ) -> Account:
        async with self._locking_engine.begin() as conn:
            # PostgreSQL: lock the active admins first, always in id order, so that two
            # admins demoting each other serialize instead of deadlocking; the second
            # then re-reads and finds one admin left. SQLite: BEGIN IMMEDIATE serializes.
            lock = conn.dialect.name == "postgresql"
            admins: list[UUID] = []
            if change.may_remove_admin:
                query = (
                    sa.select(_accounts.c.id)
                    .where(_accounts.c.role == "admin", _accounts.c.is_active.is_(True))
                    .order_by(_accounts.c.id)
                )
                admins = list(
                    (await conn.execute(query.with_for_update() if lock else query)).scalars()
                )
            query = _accounts.select().where(_accounts.c.id == account_id)
            row = (await conn.execute(query.with_for_update() if lock else query)).first()
            if row is None:
                raise NotFoundError("no such account")
            before = _account(row)
            expected = change.expect_token_version
            if expected is not None and before.token_version != expected:
                raise InvalidTokenError("token version revoked during the change")
            if change.expect_password_hash not in (None, before.password_hash):
                raise InvalidTokenError("password changed during the change")
            values: dict[str, Any] = {}
            if change.role is not None and change.role != before.role:
                values["role"] = change.role
            if change.is_active is not None and change.is_active != before.is_active:
                values["is_active"] = change.is_active
            stays_admin = values.get("role", before.role) == "admin" and values.get(
                "is_active", before.is_active
            )
            if before.id in admins and not stays_admin and len(admins) <= 1:
                raise LastAdminError("the last active admin cannot be demoted or disabled")
            if change.revoke_sessions or (change.bump_token_version and values):
                values["token_version"] = _accounts.c.token_version + 1
                values["tokens_revoked_at"] = now
            if change.locked is not None and change.locked != (before.locked_at is not None):
                values["locked_at"] = now if change.locked else None
            if change.password_hash is not None:
                values["password_hash"] = change.password_hash
            if change.email_verified is not None:
                values["email_verified"] = change.email_verified
            if change.use_token is not None:
                await _spend(conn, change.use_token, before, now)
            if change.revoke_sessions:
                condition = [_sessions.c.user_id == account_id, _sessions.c.revoked_at.is_(None)]
                if change.keep_session is not None:
                    condition.append(_sessions.c.id != change.keep_session)
                await conn.execute(
                    _sessions.update()
                    .where(*condition)
                    .values(revoked_at=now, revoked_reason=change.reason[:64])
                )
            after = before
            if values:
                values["updated_at"] = now
                statement = (
                    _accounts.update()
                    .where(_accounts.c.id == account_id)
                    .values(**values)
                    .returning(*_accounts.c)
                )
                after = _account((await conn.execute(statement)).one())
            head = await _insert_events(conn, events(before, after), self._chain)
        await _published(self._chain, head)
        return after

    async def resolve_id(self, email_key: str, *, reserve: bool) -> tuple[UUID, bool] | None:
        account = sa.select(_accounts.c.id, sa.literal(0).label("rank")).where(
            _accounts.c.email_key == email_key
        )
        reserved = sa.select(_reservations.c.id, sa.literal(1).label("rank")).where(
            _reservations.c.email_key == email_key
        )
        query = sa.union_all(account, reserved).order_by("rank").limit(1)
        if not reserve:
            async with self._engine.connect() as conn:
                row = (await conn.execute(query)).first()
            return (row.id, row.rank == 0) if row else None
        # The same work whatever the answer: an insert-if-absent, then the lookup, in one
        # transaction. A known and an unknown address cost alike, so timing does not
        # tell them apart (the account, when there is one, wins over the reservation).
        async with self._engine.begin() as conn:
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            await conn.execute(
                dialect.insert(_reservations)
                .values(email_key=email_key, id=uuid.uuid4(), created_at=datetime.now(UTC))
                .on_conflict_do_nothing(index_elements=["email_key"])
            )
            row = (await conn.execute(query)).one()
        return row.id, row.rank == 0

    async def add(self, account: Account) -> None:
        try:
            async with self._engine.begin() as conn:
                await conn.execute(_accounts.insert().values(**dataclasses.asdict(account)))
        except IntegrityError as exc:
            raise ConflictError("email already registered") from exc

    async def get(self, account_id: UUID) -> Account | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(_accounts.select().where(_accounts.c.id == account_id))
            ).first()
        return _account(row) if row else None

    async def get_by_email(self, email_key: str) -> Account | None:
        query = _accounts.select().where(_accounts.c.email_key == email_key)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _account(row) if row else None

    async def update(self, account_id: UUID, **changes: Any) -> Account | None:
        unknown = set(changes) - set(_ACCOUNT_FIELDS) | ({"id", "created_at"} & set(changes))
        if unknown:
            raise ValueError(f"not updatable account fields: {sorted(unknown)}")
        changes.setdefault("updated_at", datetime.now(UTC))
        statement = (
            _accounts.update()
            .where(_accounts.c.id == account_id)
            .values(**changes)
            .returning(*_accounts.c)
        )
        try:
            async with self._engine.begin() as conn:
                row = (await conn.execute(statement)).first()
        except IntegrityError as exc:
            raise ConflictError("email already registered") from exc
        return _account(row) if row else None

    async def bump_token_version(self, account_id: UUID, *, now: datetime) -> int:
        statement = (
            _accounts.update()
            .where(_accounts.c.id == account_id)
            .values(token_version=_accounts.c.token_version + 1, tokens_revoked_at=now)
            .returning(_accounts.c.token_version)
        )
        async with self._engine.begin() as conn:
            return int((await conn.execute(statement)).scalar_one())


class SQLSessionStore(_SQLStore):
    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        self._locking_engine = write_locking(engine)

    async def create(
        self, session: AuthSession, token_digest: str, *, expect: Account | None = None
    ) -> bool:
        async with self._locking_engine.begin() as conn:
            if expect is not None and not await _still_as(conn, expect):
                return False
            await conn.execute(_sessions.insert().values(**dataclasses.asdict(session)))
            await conn.execute(
                _tokens.insert().values(
                    digest=token_digest, session_id=session.id, created_at=session.created_at
                )
            )
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
        find = (
            sa.select(_sessions, _tokens.c.used_at.label("token_used_at"))
            .join(_tokens, _tokens.c.session_id == _sessions.c.id)
            .where(_tokens.c.digest == old_digest)
        )
        async with self._locking_engine.begin() as conn:
            row = (await conn.execute(find)).first()
            if row is None:
                return RotateOutcome("unknown")
            session = _session(row)
            if session.revoked_at is not None:
                return RotateOutcome("revoked", session)
            # The compare-and-set: only the caller whose UPDATE flips used_at from NULL
            # wins. On PostgreSQL a concurrent UPDATE of the same row waits for this
            # transaction and then re-checks the WHERE clause, finding used_at set.
            claimed = await conn.execute(
                _tokens.update()
                .where(_tokens.c.digest == old_digest, _tokens.c.used_at.is_(None))
                .values(used_at=now)
            )
            if claimed.rowcount != 1:
                # RFC 9700 §4.14.2: a rotated token came back, so it leaked: end the family.
                await conn.execute(
                    _sessions.update()
                    .where(_sessions.c.id == session.id, _sessions.c.revoked_at.is_(None))
                    .values(revoked_at=now, revoked_reason="refresh token reuse")
                )
                revoked = dataclasses.replace(
                    session, revoked_at=now, revoked_reason="refresh token reuse"
                )
                return RotateOutcome("reused", revoked)
            if not session.is_live(now, idle_ttl_seconds):
                await conn.rollback()
                return RotateOutcome("expired", session)
            # Only while the session is not revoked: a revocation (logout, logout-all, a
            # password change or reset) that committed since the read above wins. On
            # PostgreSQL this UPDATE waits for one under way and re-checks revoked_at;
            # one that starts later waits for this transaction, then ends the session.
            touched = await conn.execute(
                _sessions.update()
                .where(_sessions.c.id == session.id, _sessions.c.revoked_at.is_(None))
                .values(last_used_at=now, ip_address=ip_address, user_agent=user_agent)
            )
            if touched.rowcount != 1:
                await conn.rollback()
                return RotateOutcome("revoked", session)
            await conn.execute(
                _tokens.insert().values(digest=new_digest, session_id=session.id, created_at=now)
            )
            # Read after the session is held: the token version of any revocation that
            # ends this session is newer than the one read here.
            found = await conn.execute(_accounts.select().where(_accounts.c.id == session.user_id))
            account_row = found.first()
        return RotateOutcome(
            "rotated",
            dataclasses.replace(
                session, last_used_at=now, ip_address=ip_address, user_agent=user_agent
            ),
            _account(account_row) if account_row else None,
        )

    async def get(self, session_id: UUID) -> AuthSession | None:
        async with self._engine.connect() as conn:
            query = _sessions.select().where(_sessions.c.id == session_id)
            row = (await conn.execute(query)).first()
        return _session(row) if row else None

    async def find_by_token(self, digest: str) -> AuthSession | None:
        query = (
            sa.select(_sessions)
            .join(_tokens, _tokens.c.session_id == _sessions.c.id)
            .where(_tokens.c.digest == digest)
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _session(row) if row else None

    async def list_live(
        self, user_id: UUID, *, now: datetime, idle_ttl_seconds: int
    ) -> list[AuthSession]:
        query = (
            _sessions.select()
            .where(
                _sessions.c.user_id == user_id,
                _sessions.c.revoked_at.is_(None),
                _sessions.c.absolute_expires_at > now,
            )
            .order_by(_sessions.c.created_at.desc())
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [s for s in map(_session, rows) if s.is_live(now, idle_ttl_seconds)]

    async def revoke(self, session_id: UUID, *, now: datetime, reason: str) -> bool:
        statement = (
            _sessions.update()
            .where(_sessions.c.id == session_id, _sessions.c.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason=reason)
        )
        async with self._engine.begin() as conn:
            return (await conn.execute(statement)).rowcount == 1

    async def revoke_all(
        self, user_id: UUID, *, now: datetime, reason: str, keep: UUID | None = None
    ) -> int:
        condition = [_sessions.c.user_id == user_id, _sessions.c.revoked_at.is_(None)]
        if keep is not None:
            condition.append(_sessions.c.id != keep)
        statement = (
            _sessions.update().where(*condition).values(revoked_at=now, revoked_reason=reason)
        )
        async with self._engine.begin() as conn:
            return int((await conn.execute(statement)).rowcount)


class SQLEventStore(_SQLStore):
    """Security events in SQL; chained when given ``chain`` or ``chain_key`` (without,
    the chain columns stay NULL, and ``bastion events verify`` reports the rows)."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        chain_key: bytes | None = None,
        chain: EventChain | None = None,
    ) -> None:
        super().__init__(engine)
        self._chain = _chain_of(chain, chain_key)
        self._writer = write_locking(engine) if self._chain is not None else engine

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    @property
    def chain_head(self) -> ChainHead | None:
        """The newest head of the chain this process committed (None: none yet, or no
        chain), for the JSON event lines."""
        return self._chain.head if self._chain is not None else None

    async def append(self, events: Sequence[SecurityEvent]) -> None:
        """Store ``events`` in one transaction (chained).

        Raises ``DatabaseUnavailableError`` when the database does not answer (SQLite's
        write lock not had at ``BEGIN IMMEDIATE`` included): the event queue then keeps
        the events for a later try instead of counting them as refused.
        """
        if not events:
            return
        try:
            async with self._writer.begin() as conn:
                head = await _insert_events(conn, events, self._chain)
        except DatabaseUnavailableError:
            raise
        except Exception as exc:
            error = unavailable(exc)
            if error is None:
                raise
            raise error from exc
        await _published(self._chain, head)

    async def purge(self, before: datetime, *, now: datetime) -> Checkpoint | None:
        """Delete the oldest events, those stored before the first one of ``before`` or
        later (all of them when there is none), and record it: a signed checkpoint and
        an ``events_purged`` event, chained, in the same transaction. None when there
        was nothing to delete.

        Raises ``RuntimeError`` without a chain key: the chain is what makes a purge
        different from tampering, so a store that does not chain does not purge.
        """
        if self._chain is None:
            raise RuntimeError("purging needs the event chain's key")
        key = self._chain.key
        async with self._writer.begin() as conn:
            await _lock_chain(conn)
            first_kept = (
                await conn.execute(
                    sa.select(sa.func.min(_events.c.id)).where(_events.c.timestamp >= before)
                )
            ).scalar()
            last = sa.select(sa.func.max(_events.c.id), sa.func.count())
            if first_kept is not None:
                last = last.where(_events.c.id < first_kept)
            through_id, purged = (await conn.execute(last)).one()
            if through_id is None:
                return None
            columns = [_events.c[n] for n in (*CHAINED_FIELDS, "chain_prev", "chain_mac")]
            found = await conn.execute(sa.select(*columns).where(_events.c.id == through_id))
            boundary = dict(found.one()._mapping)
            link = boundary["chain_mac"]
            # The checkpoint vouches for what it was chained to: a last row that does not
            # match its MAC (rows deleted after it and its MAC copied, or a time moved
            # back to have recent rows purged) would turn tampering into a valid purge.
            if link is not None and not hmac.compare_digest(
                link_mac(key, boundary["chain_prev"] or "", boundary), link
            ):
                raise ChainBrokenError(through_id)
            previous = (
                await conn.execute(
                    sa.select(_checkpoints.c.mac).order_by(_checkpoints.c.id.desc()).limit(1)
                )
            ).scalar()
            checkpoint = Checkpoint(
                created_at=now,
                before=before,
                through_id=through_id,
                purged=purged,
                chain_mac=link or GENESIS,
                previous=previous or GENESIS,
            )
            checkpoint = dataclasses.replace(checkpoint, mac=checkpoint_mac(key, checkpoint))
            values = {k: v for k, v in dataclasses.asdict(checkpoint).items() if k != "id"}
            inserted = await conn.execute(
                _checkpoints.insert().values(**values).returning(_checkpoints.c.id)
            )
            checkpoint = dataclasses.replace(checkpoint, id=inserted.scalar_one())
            record = SecurityEvent(
                event_type="events_purged",
                timestamp=now,
                severity="medium",
                details=f"{purged} security events older than {before.isoformat()} purged",
                extra={"purged": purged, "through_id": through_id, "checkpoint": checkpoint.id},
            )
            # Chained after the newest event, before the oldest go: the log is never empty.
            head = await _insert_events(conn, [record], self._chain)
            await conn.execute(_events.delete().where(_events.c.id <= through_id))
        await _published(self._chain, head)
        return checkpoint

    async def query(self, query: EventQuery) -> list[SecurityEvent]:
        statement = sa.select(*[_events.c[name] for name in _EVENT_FIELDS])
        for column, value in (
            ("event_type", query.event_type),
            ("user_id", query.user_id),
            ("ip_address", query.ip_address),
        ):
            if value is not None:
                statement = statement.where(_events.c[column] == value)
        if query.since is not None:
            statement = statement.where(_events.c.timestamp >= query.since)
        if query.until is not None:
            statement = statement.where(_events.c.timestamp < query.until)
        if query.before is not None:
            statement = statement.where(_keyset(query.before, older=True))
        if query.after is not None:
            statement = statement.where(_keyset(query.after, older=False))
        statement = statement.order_by(_events.c.timestamp.desc(), _events.c.id.desc())
        statement = statement.limit(query.limit)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(statement)).all()
        return [SecurityEvent(**{**row._mapping, "extra": row.extra or {}}) for row in rows]


def _keyset(position: EventPosition, *, older: bool) -> sa.ColumnElement[bool]:
    """Events strictly older (or newer) than ``position`` in (timestamp, id) order.

    Spelt out rather than as a row-value comparison so that the bound time keeps the
    column's type (UTC, naive on SQLite); the plain bound on the timestamp lets either
    backend start its scan of the (timestamp, id) indexes at the position. The id is
    bound as a BIGINT so that a forged cursor's large id is a comparison, not an error.
    """
    moment, event_id = position
    stamp, number = _events.c.timestamp, _events.c.id
    bound = sa.literal(event_id, sa.BigInteger())
    if older:
        return sa.and_(stamp <= moment, sa.or_(stamp < moment, number < bound))
    return sa.and_(stamp >= moment, sa.or_(stamp > moment, number > bound))
