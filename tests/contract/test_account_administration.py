"""The AccountStore contract for administration: pages, atomic changes with their events,
the last-admin rule, and reserved ids. On memory, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from bastion.errors import LastAdminError, NotFoundError
from bastion.stores import (
    Account,
    AccountChange,
    AccountStore,
    AuthSession,
    EventQuery,
    SecurityEvent,
    Stores,
    open_stores,
)
from tests.contract.support import make_account

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def _event(before: Account, after: Account) -> Sequence[SecurityEvent]:
    return [
        SecurityEvent(
            "role_changed",
            NOW,
            user_id=str(after.id),
            details=f"{before.role} -> {after.role}",
            extra={"old_role": before.role},
        )
    ]


def _no_events(before: Account, after: Account) -> Sequence[SecurityEvent]:
    return []


async def _add(store: AccountStore, email: str, **overrides: object) -> Account:
    account = make_account(email, **overrides)
    await store.add(account)
    return account


async def test_page_lists_accounts_oldest_first(account_store: AccountStore) -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    added = [
        await _add(account_store, f"u{i}@example.com", created_at=base + timedelta(minutes=i))
        for i in (2, 0, 1)
    ]

    page = await account_store.page(limit=10)

    assert [a.email for a in page] == ["u0@example.com", "u1@example.com", "u2@example.com"]
    assert len(added) == 3


async def test_page_continues_after_the_cursor_without_gaps_or_repeats(
    account_store: AccountStore,
) -> None:
    same_time = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(5):
        await _add(account_store, f"u{i}@example.com", created_at=same_time)
    seen: list[UUID] = []
    after = None

    while True:
        page = await account_store.page(limit=2, after=after)
        if not page:
            break
        seen += [a.id for a in page]
        after = (page[-1].created_at, page[-1].id)

    assert len(seen) == len(set(seen)) == 5


@pytest.mark.parametrize(
    ("role", "is_active", "expected"),
    [("admin", None, {"a1", "a2"}), (None, False, {"a2", "m2"}), ("member", True, {"m1"})],
    ids=["role", "inactive", "both"],
)
async def test_page_filters_by_role_and_active_flag(
    account_store: AccountStore, role: str | None, is_active: bool | None, expected: set[str]
) -> None:
    await _add(account_store, "a1@example.com", role="admin")
    await _add(account_store, "a2@example.com", role="admin", is_active=False)
    await _add(account_store, "m1@example.com", role="member")
    await _add(account_store, "m2@example.com", role="member", is_active=False)

    page = await account_store.page(limit=10, role=role, is_active=is_active)

    assert {a.email.split("@")[0] for a in page} == expected


async def test_change_sets_the_role_and_stores_its_event(stores: Stores) -> None:
    account = await _add(stores.accounts, "m@example.com", token_version=2)

    changed = await stores.accounts.change(
        account.id, AccountChange(role="viewer"), now=NOW, events=_event
    )

    assert changed.role == "viewer"
    assert changed.token_version == 3
    assert changed.updated_at == NOW
    assert (await stores.accounts.get(account.id)) == changed
    [event] = await stores.events.query(EventQuery(event_type="role_changed"))
    assert event.details == "member -> viewer"
    assert event.extra == {"old_role": "member"}


async def test_change_with_revoke_sessions_ends_sessions_and_bumps_the_version(
    stores: Stores,
) -> None:
    account = await _add(stores.accounts, "m@example.com", token_version=4)
    sessions = [
        AuthSession(uuid4(), account.id, NOW, NOW, NOW + timedelta(days=1)) for _ in range(3)
    ]
    for index, session in enumerate(sessions):
        await stores.sessions.create(session, f"digest-{index}")

    changed = await stores.accounts.change(
        account.id,
        AccountChange(revoke_sessions=True, keep_session=sessions[0].id, reason="test"),
        now=NOW,
        events=_no_events,
    )

    assert changed.token_version == 5
    live = await stores.sessions.list_live(account.id, now=NOW, idle_ttl_seconds=3600)
    assert [s.id for s in live] == [sessions[0].id]
    revoked = await stores.sessions.get(sessions[1].id)
    assert revoked is not None
    assert revoked.revoked_reason == "test"


@pytest.mark.parametrize(
    ("change", "revokes"),
    [
        (AccountChange(revoke_sessions=True), True),
        (AccountChange(role="viewer"), True),
        (AccountChange(is_active=False), True),
        (AccountChange(locked=True, bump_token_version=False), False),
        (AccountChange(role="viewer", bump_token_version=False), False),
    ],
    ids=["revoke-sessions", "role", "disable", "lock", "no-bump"],
)
async def test_a_token_version_change_records_when_tokens_were_revoked(
    stores: Stores, change: AccountChange, revokes: bool
) -> None:
    account = await _add(stores.accounts, "m@example.com")

    changed = await stores.accounts.change(account.id, change, now=NOW, events=_no_events)

    # What revokes the tokens that carry no version (an external issuer's), by iat.
    assert changed.tokens_revoked_at == (NOW if revokes else None)
    assert (await stores.accounts.get(account.id)) == changed


async def test_change_of_a_missing_account_raises_not_found(stores: Stores) -> None:
    with pytest.raises(NotFoundError):
        await stores.accounts.change(uuid4(), AccountChange(role="admin"), now=NOW, events=_event)

    assert await stores.events.query(EventQuery()) == []


@pytest.mark.parametrize(
    "change",
    [AccountChange(role="member"), AccountChange(is_active=False)],
    ids=["demote", "disable"],
)
async def test_the_last_active_admin_cannot_be_removed(
    stores: Stores, change: AccountChange
) -> None:
    admin = await _add(stores.accounts, "admin@example.com", role="admin")
    await _add(stores.accounts, "old@example.com", role="admin", is_active=False)

    with pytest.raises(LastAdminError):
        await stores.accounts.change(admin.id, change, now=NOW, events=_event)

    assert (await stores.accounts.get(admin.id)) == admin
    assert await stores.events.query(EventQuery()) == []


async def test_one_of_two_admins_may_be_demoted(stores: Stores) -> None:
    first = await _add(stores.accounts, "a1@example.com", role="admin")
    await _add(stores.accounts, "a2@example.com", role="admin")

    changed = await stores.accounts.change(
        first.id, AccountChange(role="member"), now=NOW, events=_event
    )

    assert changed.role == "member"


@pytest.fixture
async def racing_account_stores(
    store_database_url: str, stores: Stores
) -> AsyncIterator[list[AccountStore]]:
    """Two account stores over the same data, each with its own connection pool."""
    if store_database_url == "memory://":
        yield [stores.accounts, stores.accounts]
        return
    opened = [open_stores(store_database_url) for _ in range(2)]
    yield [s.accounts for s in opened]
    for other in opened:
        await other.aclose()


async def test_two_admins_demoting_each_other_at_once_leave_one_admin(
    stores: Stores, racing_account_stores: list[AccountStore]
) -> None:
    first = await _add(stores.accounts, "a1@example.com", role="admin")
    second = await _add(stores.accounts, "a2@example.com", role="admin")
    store_a, store_b = racing_account_stores

    results = await asyncio.gather(
        store_a.change(first.id, AccountChange(role="member"), now=NOW, events=_event),
        store_b.change(second.id, AccountChange(role="member"), now=NOW, events=_event),
        return_exceptions=True,
    )

    assert sorted(type(r).__name__ for r in results) == ["Account", "LastAdminError"]
    admins = await stores.accounts.page(limit=10, role="admin", is_active=True)
    assert len(admins) == 1
    assert len(await stores.events.query(EventQuery(event_type="role_changed"))) == 1


async def test_resolve_id_finds_the_account_of_an_email(account_store: AccountStore) -> None:
    account = await _add(account_store, "known@example.com")

    assert await account_store.resolve_id("known@example.com", reserve=True) == (account.id, True)


async def test_resolve_id_without_reserve_is_none_for_an_unknown_email(
    account_store: AccountStore,
) -> None:
    assert await account_store.resolve_id("nobody@example.com", reserve=False) is None


async def test_resolve_id_reserves_one_stable_id_per_email(account_store: AccountStore) -> None:
    first = await account_store.resolve_id("later@example.com", reserve=True)
    again = await account_store.resolve_id("later@example.com", reserve=True)
    other = await account_store.resolve_id("else@example.com", reserve=True)

    assert first is not None
    assert first[1] is False
    assert first == again != other
    assert await account_store.resolve_id("later@example.com", reserve=False) == first


async def test_concurrent_reservations_agree_on_one_id(
    racing_account_stores: list[AccountStore],
) -> None:
    store_a, store_b = racing_account_stores

    ids = await asyncio.gather(
        store_a.resolve_id("race@example.com", reserve=True),
        store_b.resolve_id("race@example.com", reserve=True),
    )

    assert ids[0] is not None
    assert ids[0] == ids[1]


async def test_a_change_that_changes_nothing_keeps_the_token_version(stores: Stores) -> None:
    account = await _add(stores.accounts, "m@example.com", token_version=2)

    same = await stores.accounts.change(
        account.id, AccountChange(role="member"), now=NOW, events=_no_events
    )

    assert same == account
