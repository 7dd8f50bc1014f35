"""The SessionStore contract, on memory, SQLite and PostgreSQL.

Refresh-token rotation is a compare-and-set: a current token rotates once; a rotated
token that comes back is reuse and ends its family (RFC 9700 §4.14.2).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from bastion.stores import AccountStore, AuthSession, RotateOutcome, SessionStore
from tests.contract.support import SessionStoresFactory, make_account

START = datetime(2024, 6, 1, 9, 0, 0, 250000, tzinfo=UTC)
LATER = START + timedelta(minutes=5)
IDLE_TTL = 3600
LIFETIME = timedelta(days=30)


def digest(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def make_session(
    user_id: UUID, *, created_at: datetime = START, **overrides: object
) -> AuthSession:
    values: dict[str, object] = {
        "id": uuid4(),
        "user_id": user_id,
        "created_at": created_at,
        "last_used_at": created_at,
        "absolute_expires_at": created_at + LIFETIME,
        "ip_address": "192.0.2.10",
        "user_agent": "client/1.0",
    }
    values.update(overrides)
    return AuthSession(**values)  # type: ignore[arg-type]


async def rotate(
    store: SessionStore,
    old: str,
    new: str,
    *,
    now: datetime = LATER,
    ip_address: str | None = "198.51.100.4",
    user_agent: str | None = "client/2.0",
) -> RotateOutcome:
    return await store.rotate(
        old, new, now=now, idle_ttl_seconds=IDLE_TTL, ip_address=ip_address, user_agent=user_agent
    )


@pytest.fixture
async def session(session_store: SessionStore, user_id: UUID) -> AuthSession:
    """A live session whose current refresh token has the digest ``digest("first")``."""
    created = make_session(user_id)
    await session_store.create(created, digest("first"))
    return created


async def test_get_returns_the_session_as_created(
    session_store: SessionStore, session: AuthSession
) -> None:
    found = await session_store.get(session.id)

    assert found == session
    assert found.created_at.utcoffset() == timedelta(0)


async def test_get_of_unknown_id_is_none(session_store: SessionStore, session: AuthSession) -> None:
    found = await session_store.get(uuid4())

    assert found is None


async def test_current_token_rotates(session_store: SessionStore, session: AuthSession) -> None:
    outcome = await rotate(session_store, digest("first"), digest("second"))

    assert outcome.status == "rotated"
    expected = dataclasses.replace(
        session, last_used_at=LATER, ip_address="198.51.100.4", user_agent="client/2.0"
    )
    assert outcome.session == expected


async def test_rotation_records_use_on_the_stored_session(
    session_store: SessionStore, session: AuthSession
) -> None:
    await rotate(session_store, digest("first"), digest("second"))

    stored = await session_store.get(session.id)

    assert stored is not None
    assert stored.last_used_at == LATER
    assert stored.ip_address == "198.51.100.4"
    assert stored.user_agent == "client/2.0"
    assert stored.revoked_at is None


async def test_new_token_rotates_in_turn(session_store: SessionStore, session: AuthSession) -> None:
    await rotate(session_store, digest("first"), digest("second"))

    outcome = await rotate(
        session_store, digest("second"), digest("third"), now=LATER + timedelta(minutes=1)
    )

    assert outcome.status == "rotated"


async def test_rotated_token_presented_again_is_reuse(
    session_store: SessionStore, session: AuthSession
) -> None:
    await rotate(session_store, digest("first"), digest("second"))

    outcome = await rotate(session_store, digest("first"), digest("attacker"))

    assert outcome.status == "reused"
    assert outcome.session is not None
    assert outcome.session.id == session.id


async def test_reuse_revokes_the_session(session_store: SessionStore, session: AuthSession) -> None:
    await rotate(session_store, digest("first"), digest("second"))
    reused_at = LATER + timedelta(minutes=1)
    await rotate(session_store, digest("first"), digest("attacker"), now=reused_at)

    stored = await session_store.get(session.id)

    assert stored is not None
    assert stored.revoked_at == reused_at
    assert stored.revoked_reason is not None
    assert "reuse" in stored.revoked_reason


async def test_after_reuse_the_current_token_is_revoked(
    session_store: SessionStore, session: AuthSession
) -> None:
    await rotate(session_store, digest("first"), digest("second"))
    await rotate(session_store, digest("first"), digest("attacker"))

    outcome = await rotate(session_store, digest("second"), digest("third"))

    assert outcome.status == "revoked"


async def test_reuse_does_not_store_the_new_digest(
    session_store: SessionStore, session: AuthSession
) -> None:
    await rotate(session_store, digest("first"), digest("second"))
    await rotate(session_store, digest("first"), digest("attacker"))

    found = await session_store.find_by_token(digest("attacker"))

    assert found is None


async def test_unknown_token_is_unknown(session_store: SessionStore, session: AuthSession) -> None:
    outcome = await rotate(session_store, digest("never issued"), digest("second"))

    assert outcome == RotateOutcome("unknown")


async def test_unknown_token_changes_nothing(
    session_store: SessionStore, session: AuthSession
) -> None:
    await rotate(session_store, digest("never issued"), digest("second"))

    stored = await session_store.get(session.id)
    new_token_owner = await session_store.find_by_token(digest("second"))

    assert stored == session
    assert new_token_owner is None


async def test_token_of_revoked_session_is_revoked(
    session_store: SessionStore, session: AuthSession
) -> None:
    await session_store.revoke(session.id, now=START, reason="logout")

    outcome = await rotate(session_store, digest("first"), digest("second"))

    assert outcome.status == "revoked"
    assert outcome.session is not None
    assert outcome.session.revoked_reason == "logout"


# (session overrides, the moment of the refused rotation, a moment inside the window)
EXPIRIES = {
    "absolute": (
        {"absolute_expires_at": START + timedelta(minutes=10)},
        START + timedelta(minutes=10),
        START + timedelta(minutes=9),
    ),
    "idle": (
        {},
        START + timedelta(seconds=IDLE_TTL),
        START + timedelta(seconds=IDLE_TTL - 1),
    ),
}


@pytest.mark.parametrize("expiry", list(EXPIRIES), ids=list(EXPIRIES))
async def test_token_of_expired_session_is_expired(
    session_store: SessionStore, user_id: UUID, expiry: str
) -> None:
    overrides, refused_at, _ = EXPIRIES[expiry]
    await session_store.create(make_session(user_id, **overrides), digest("first"))

    outcome = await rotate(session_store, digest("first"), digest("second"), now=refused_at)

    assert outcome.status == "expired"


@pytest.mark.parametrize("expiry", list(EXPIRIES), ids=list(EXPIRIES))
async def test_expired_refusal_changes_nothing(
    session_store: SessionStore, user_id: UUID, expiry: str
) -> None:
    overrides, refused_at, _ = EXPIRIES[expiry]
    created = make_session(user_id, **overrides)
    await session_store.create(created, digest("first"))
    await rotate(session_store, digest("first"), digest("second"), now=refused_at)

    stored = await session_store.get(created.id)
    new_token_owner = await session_store.find_by_token(digest("second"))

    assert stored == created
    assert new_token_owner is None


@pytest.mark.parametrize("expiry", list(EXPIRIES), ids=list(EXPIRIES))
async def test_expired_refusal_does_not_consume_the_token(
    session_store: SessionStore, user_id: UUID, expiry: str
) -> None:
    overrides, refused_at, inside_window = EXPIRIES[expiry]
    await session_store.create(make_session(user_id, **overrides), digest("first"))
    await rotate(session_store, digest("first"), digest("second"), now=refused_at)

    outcome = await rotate(session_store, digest("first"), digest("third"), now=inside_window)

    assert outcome.status == "rotated"


async def test_revoke_records_time_and_reason(
    session_store: SessionStore, session: AuthSession
) -> None:
    revoked = await session_store.revoke(session.id, now=LATER, reason="logout")

    stored = await session_store.get(session.id)

    assert revoked is True
    assert stored == dataclasses.replace(session, revoked_at=LATER, revoked_reason="logout")


async def test_revoke_of_a_revoked_session_is_false_and_keeps_the_first_reason(
    session_store: SessionStore, session: AuthSession
) -> None:
    await session_store.revoke(session.id, now=LATER, reason="logout")

    again = await session_store.revoke(
        session.id, now=LATER + timedelta(hours=1), reason="password changed"
    )

    assert again is False
    stored = await session_store.get(session.id)
    assert stored is not None
    assert (stored.revoked_at, stored.revoked_reason) == (LATER, "logout")


async def test_revoke_of_unknown_session_is_false(
    session_store: SessionStore, session: AuthSession
) -> None:
    revoked = await session_store.revoke(uuid4(), now=LATER, reason="logout")

    assert revoked is False


async def test_revoke_all_revokes_every_live_session_but_the_kept_one(
    session_store: SessionStore, user_id: UUID
) -> None:
    sessions = [make_session(user_id) for _ in range(3)]
    for index, created in enumerate(sessions):
        await session_store.create(created, digest(f"token-{index}"))
    kept = sessions[0]

    count = await session_store.revoke_all(
        user_id, now=LATER, reason="password changed", keep=kept.id
    )

    assert count == 2
    assert await session_store.get(kept.id) == kept
    for revoked in sessions[1:]:
        stored = await session_store.get(revoked.id)
        assert stored is not None
        assert (stored.revoked_at, stored.revoked_reason) == (LATER, "password changed")


async def test_revoke_all_counts_only_sessions_not_yet_revoked(
    session_store: SessionStore, user_id: UUID
) -> None:
    sessions = [make_session(user_id) for _ in range(3)]
    for index, created in enumerate(sessions):
        await session_store.create(created, digest(f"token-{index}"))
    await session_store.revoke(sessions[0].id, now=START, reason="logout")

    count = await session_store.revoke_all(user_id, now=LATER, reason="account disabled")

    assert count == 2
    first = await session_store.get(sessions[0].id)
    assert first is not None
    assert (first.revoked_at, first.revoked_reason) == (START, "logout")


async def test_revoke_all_leaves_other_users_sessions(
    session_store: SessionStore, account_store: AccountStore, user_id: UUID
) -> None:
    other_user = make_account("other@example.com")
    await account_store.add(other_user)
    others = make_session(other_user.id)
    await session_store.create(make_session(user_id), digest("mine"))
    await session_store.create(others, digest("theirs"))

    await session_store.revoke_all(user_id, now=LATER, reason="logout everywhere")

    assert await session_store.get(others.id) == others


async def test_list_live_excludes_revoked_and_expired_sessions(
    session_store: SessionStore, user_id: UUID
) -> None:
    now = START + timedelta(days=1)
    live = make_session(user_id, last_used_at=now - timedelta(minutes=1))
    revoked = make_session(user_id, last_used_at=now - timedelta(minutes=1))
    past_absolute = make_session(
        user_id, last_used_at=now - timedelta(minutes=1), absolute_expires_at=now
    )
    idle = make_session(user_id, last_used_at=now - timedelta(seconds=IDLE_TTL))
    for index, created in enumerate([live, revoked, past_absolute, idle]):
        await session_store.create(created, digest(f"token-{index}"))
    await session_store.revoke(revoked.id, now=now, reason="logout")

    listed = await session_store.list_live(user_id, now=now, idle_ttl_seconds=IDLE_TTL)

    assert listed == [live]


async def test_list_live_orders_newest_first(session_store: SessionStore, user_id: UUID) -> None:
    created = [make_session(user_id, created_at=START + timedelta(minutes=m)) for m in (2, 0, 1)]
    for index, each in enumerate(created):
        await session_store.create(each, digest(f"token-{index}"))

    listed = await session_store.list_live(user_id, now=LATER, idle_ttl_seconds=IDLE_TTL)

    assert [s.created_at for s in listed] == [
        START + timedelta(minutes=2),
        START + timedelta(minutes=1),
        START,
    ]


async def test_list_live_shows_only_that_users_sessions(
    session_store: SessionStore, account_store: AccountStore, user_id: UUID
) -> None:
    other_user = make_account("other@example.com")
    await account_store.add(other_user)
    mine = make_session(user_id)
    await session_store.create(mine, digest("mine"))
    await session_store.create(make_session(other_user.id), digest("theirs"))

    listed = await session_store.list_live(user_id, now=LATER, idle_ttl_seconds=IDLE_TTL)

    assert listed == [mine]


@pytest.mark.parametrize("label", ["first", "second", "third"], ids=["original", "used", "current"])
async def test_find_by_token_finds_the_session_by_any_of_its_digests(
    session_store: SessionStore, session: AuthSession, label: str
) -> None:
    await rotate(session_store, digest("first"), digest("second"))
    await rotate(session_store, digest("second"), digest("third"))

    found = await session_store.find_by_token(digest(label))

    assert found is not None
    assert found.id == session.id


async def test_find_by_token_of_unknown_digest_is_none(
    session_store: SessionStore, session: AuthSession
) -> None:
    found = await session_store.find_by_token(digest("never issued"))

    assert found is None


RACERS = [2, 10]


@pytest.mark.parametrize("racers", RACERS, ids=[f"{n}-callers" for n in RACERS])
async def test_concurrent_rotations_of_one_token_rotate_exactly_once(
    session_store: SessionStore,
    session: AuthSession,
    racing_session_stores: SessionStoresFactory,
    racers: int,
) -> None:
    stores = await racing_session_stores(racers)

    outcomes = await asyncio.gather(
        *(rotate(store, digest("first"), digest(f"new-{i}")) for i, store in enumerate(stores))
    )

    statuses = [outcome.status for outcome in outcomes]
    assert statuses.count("rotated") == 1
    losers = [status for status in statuses if status != "rotated"]
    assert "reused" in losers
    assert set(losers) <= {"reused", "revoked"}  # "revoked": came after the family ended


@pytest.mark.parametrize("racers", RACERS, ids=[f"{n}-callers" for n in RACERS])
async def test_concurrent_rotations_of_one_token_end_the_family(
    session_store: SessionStore,
    session: AuthSession,
    racing_session_stores: SessionStoresFactory,
    racers: int,
) -> None:
    stores = await racing_session_stores(racers)
    outcomes = await asyncio.gather(
        *(rotate(store, digest("first"), digest(f"new-{i}")) for i, store in enumerate(stores))
    )
    winner = next(i for i, outcome in enumerate(outcomes) if outcome.status == "rotated")

    stored = await session_store.get(session.id)
    winners_token = await rotate(session_store, digest(f"new-{winner}"), digest("after"))
    losers_tokens = [
        await session_store.find_by_token(digest(f"new-{i}")) for i in range(racers) if i != winner
    ]

    assert stored is not None
    assert stored.revoked_at == LATER
    assert winners_token.status == "revoked"
    assert losers_tokens == [None] * (racers - 1)
