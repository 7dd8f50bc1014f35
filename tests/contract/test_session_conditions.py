"""Sessions open and rotate only against the account state they were granted for.

A login opens its session only if the account is still at the token version and with
the password hash it read before checking the password, in the insert's transaction; a
rotation commits only while its session is not revoked and reads the account in the
same transaction. On memory, SQLite and PostgreSQL; the PostgreSQL cases also hold a
change open in another transaction to show the check waits for it.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
import sqlalchemy as sa

from bastion.errors import InvalidTokenError
from bastion.stores import Account, AccountChange, AuthSession, Stores
from tests.contract.support import make_account

START = datetime(2024, 6, 1, 9, 0, tzinfo=UTC)
LATER = START + timedelta(minutes=5)
IDLE_TTL = 3600


def digest(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def new_session(user_id: UUID) -> AuthSession:
    return AuthSession(
        id=uuid4(),
        user_id=user_id,
        created_at=START,
        last_used_at=START,
        absolute_expires_at=START + timedelta(days=30),
    )


def no_events(before: Account, after: Account) -> list[Any]:
    return []


async def rotate(stores: Stores, old: str, new: str) -> Any:
    return await stores.sessions.rotate(
        digest(old),
        digest(new),
        now=LATER,
        idle_ttl_seconds=IDLE_TTL,
        ip_address=None,
        user_agent=None,
    )


@pytest.fixture
async def account(stores: Stores) -> Account:
    created = make_account("owner@example.com")
    await stores.accounts.add(created)
    return created


async def test_a_session_opens_for_the_account_as_read(stores: Stores, account: Account) -> None:
    session = new_session(account.id)

    stored = await stores.sessions.create(session, digest("first"), expect=account)

    assert stored is True
    assert await stores.sessions.find_by_token(digest("first")) == session


@pytest.mark.parametrize(
    "change",
    [
        AccountChange(revoke_sessions=True, reason="logout-all"),
        AccountChange(password_hash="$argon2id$new", revoke_sessions=True, reason="reset"),
        AccountChange(password_hash="$argon2id$new", bump_token_version=False, reason="set"),
        AccountChange(is_active=False, revoke_sessions=True, reason="disabled"),
    ],
    ids=["revocation", "password-reset", "password-without-revocation", "disabled"],
)
async def test_no_session_opens_after_a_change_of_the_account(
    stores: Stores, account: Account, change: AccountChange
) -> None:
    await stores.accounts.change(account.id, change, now=START, events=no_events)

    stored = await stores.sessions.create(new_session(account.id), digest("first"), expect=account)

    assert stored is False
    assert await stores.sessions.find_by_token(digest("first")) is None


async def test_a_rotation_reads_the_account_in_its_transaction(
    stores: Stores, account: Account
) -> None:
    await stores.sessions.create(new_session(account.id), digest("first"))
    promoted = await stores.accounts.change(
        account.id, AccountChange(role="admin"), now=START, events=no_events
    )

    outcome = await rotate(stores, "first", "second")

    assert outcome.status == "rotated"
    assert outcome.account == promoted


async def test_a_change_over_another_password_is_refused(stores: Stores, account: Account) -> None:
    await stores.accounts.update(account.id, password_hash="$argon2id$other")
    change = AccountChange(
        password_hash="$argon2id$new",
        bump_token_version=False,
        expect_password_hash=account.password_hash,
    )

    with pytest.raises(InvalidTokenError):
        await stores.accounts.change(account.id, change, now=START, events=no_events)

    stored = await stores.accounts.get(account.id)
    assert stored is not None
    assert stored.password_hash == "$argon2id$other"


# -- PostgreSQL: the check waits for a change under way in another transaction ----------


async def _until_waiting(stores: Stores) -> None:
    """Return once a statement of this database waits for a lock (a condition, polled)."""
    assert stores.engine is not None
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    async with asyncio.timeout(30):
        while True:
            async with stores.engine.connect() as conn:
                if (await conn.execute(query)).scalar():
                    return
            await asyncio.sleep(0.01)


# Row locks held by another transaction: PostgreSQL (SQLite's write lock serializes the
# whole transaction, and the memory stores never await inside one).
postgres_only = pytest.mark.parametrize("store_database_url", ["postgres"], indirect=True)


@postgres_only
async def test_a_session_waits_for_a_revocation_under_way_and_is_refused(
    stores: Stores, account: Account
) -> None:
    assert stores.engine is not None
    accounts = sa.table("accounts", sa.column("id"), sa.column("token_version"))
    async with stores.engine.connect() as change:
        await change.begin()
        await change.execute(
            sa.select(accounts.c.id).where(accounts.c.id == account.id).with_for_update()
        )
        await change.execute(
            accounts.update()
            .where(accounts.c.id == account.id)
            .values(token_version=accounts.c.token_version + 1)
        )
        opening = asyncio.ensure_future(
            stores.sessions.create(new_session(account.id), digest("first"), expect=account)
        )
        await _until_waiting(stores)
        await change.commit()

    assert await opening is False


@postgres_only
async def test_a_rotation_waits_for_a_revocation_under_way_and_is_refused(
    stores: Stores, account: Account
) -> None:
    assert stores.engine is not None
    session = new_session(account.id)
    await stores.sessions.create(session, digest("first"))
    sessions = sa.table("auth_sessions", sa.column("id"), sa.column("revoked_at"))
    async with stores.engine.connect() as change:
        await change.begin()
        await change.execute(
            sessions.update().where(sessions.c.id == session.id).values(revoked_at=START)
        )
        rotating = asyncio.ensure_future(rotate(stores, "first", "second"))
        await _until_waiting(stores)
        await change.commit()

    outcome = await rotating
    assert outcome.status == "revoked"
    assert await stores.sessions.find_by_token(digest("second")) is None
