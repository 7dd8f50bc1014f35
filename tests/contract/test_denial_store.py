"""The DenialStore contract (the durable record of revocations), on memory, SQLite and
PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from bastion.stores import AuthSession, DenialStore, SessionStore, Stores

NOW = datetime(2024, 6, 1, 9, 0, 0, 250000, tzinfo=UTC)
SOON = NOW + timedelta(minutes=16)
PAST = NOW - timedelta(seconds=1)


@pytest.fixture
def denial_store(stores: Stores) -> DenialStore:
    return stores.denials


async def test_a_denial_is_recorded_until_it_expires(denial_store: DenialStore) -> None:
    await denial_store.deny("jti-1", SOON, now=NOW)

    assert await denial_store.denied(now=NOW) == [("jti-1", SOON)]
    assert await denial_store.denied(now=SOON) == []


async def test_denying_again_keeps_the_later_expiry(denial_store: DenialStore) -> None:
    later = SOON + timedelta(minutes=5)
    await denial_store.deny("jti-1", later, now=NOW)

    await denial_store.deny("jti-1", SOON, now=NOW)

    assert await denial_store.denied(now=NOW) == [("jti-1", later)]


async def test_denials_of_other_ids_are_kept_apart(denial_store: DenialStore) -> None:
    await denial_store.deny("jti-1", SOON, now=NOW)
    await denial_store.deny("jti-2", SOON, now=NOW)

    assert sorted(await denial_store.denied(now=NOW)) == [("jti-1", SOON), ("jti-2", SOON)]


async def test_purge_deletes_only_expired_denials(denial_store: DenialStore) -> None:
    await denial_store.deny("old", PAST, now=PAST - timedelta(hours=1))
    await denial_store.deny("live", SOON, now=PAST - timedelta(hours=1))

    purged = await denial_store.purge(now=NOW)

    assert purged == 1
    assert await denial_store.denied(now=PAST - timedelta(minutes=1)) == [("live", SOON)]


async def test_purge_is_bounded(denial_store: DenialStore) -> None:
    earlier = PAST - timedelta(hours=1)
    for n in range(5):
        await denial_store.deny(f"old-{n}", PAST, now=earlier)

    first = await denial_store.purge(now=NOW, limit=3)
    second = await denial_store.purge(now=NOW, limit=3)

    assert (first, second) == (3, 2)
    assert await denial_store.denied(now=earlier) == []


async def test_a_new_denial_sweeps_expired_ones(denial_store: DenialStore) -> None:
    earlier = PAST - timedelta(hours=1)
    await denial_store.deny("old", PAST, now=earlier)

    await denial_store.deny("new", SOON, now=NOW)

    assert await denial_store.denied(now=earlier) == [("new", SOON)]


def _session(user_id: UUID) -> AuthSession:
    start = NOW - timedelta(hours=2)
    return AuthSession(
        id=uuid4(),
        user_id=user_id,
        created_at=start,
        last_used_at=start,
        absolute_expires_at=start + timedelta(days=30),
    )


async def test_revoked_sessions_are_those_revoked_since(
    denial_store: DenialStore, session_store: SessionStore, user_id: UUID
) -> None:
    long_ago, recent, live = _session(user_id), _session(user_id), _session(user_id)
    for session in (long_ago, recent, live):
        await session_store.create(session, uuid4().hex)
    await session_store.revoke(long_ago.id, now=NOW - timedelta(hours=2), reason="logout")
    await session_store.revoke(recent.id, now=NOW, reason="logout")

    revoked = await denial_store.revoked_sessions(since=NOW - timedelta(hours=1))

    assert revoked == [(recent.id, NOW)]


async def test_sessions_revoked_together_are_all_reported(
    denial_store: DenialStore, session_store: SessionStore, user_id: UUID
) -> None:
    sessions = [_session(user_id) for _ in range(3)]
    for session in sessions:
        await session_store.create(session, uuid4().hex)
    await session_store.revoke_all(user_id, now=NOW, reason="logout-all")

    revoked = await denial_store.revoked_sessions(since=PAST)

    assert sorted(revoked) == sorted((s.id, NOW) for s in sessions)
