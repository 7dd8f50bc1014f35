"""The AccountStore contract, on memory, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from bastion.errors import ConflictError
from bastion.stores import AccountStore
from tests.contract.support import make_account

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


async def test_get_returns_every_field_as_added(account_store: AccountStore) -> None:
    account = make_account(
        display_name="Ada Lovelace",
        role="admin",
        is_active=False,
        email_verified=True,
        mfa_enabled=True,
        token_version=7,
    )
    await account_store.add(account)

    found = await account_store.get(account.id)

    assert found == account


async def test_get_by_email_finds_the_account_by_its_email_key(
    account_store: AccountStore,
) -> None:
    account = make_account("Grace@Example.com")
    await account_store.add(account)

    found = await account_store.get_by_email("grace@example.com")

    assert found == account


async def test_stored_datetimes_are_utc_aware(account_store: AccountStore) -> None:
    account = make_account()
    await account_store.add(account)

    found = await account_store.get(account.id)

    assert found is not None
    assert found.created_at.utcoffset() == timedelta(0)
    assert found.updated_at.utcoffset() == timedelta(0)
    assert found.created_at == account.created_at


async def test_password_hash_may_be_absent(account_store: AccountStore) -> None:
    account = make_account(password_hash=None)
    await account_store.add(account)

    found = await account_store.get(account.id)

    assert found is not None
    assert found.password_hash is None


async def test_get_of_unknown_id_is_none(account_store: AccountStore) -> None:
    await account_store.add(make_account())

    found = await account_store.get(uuid4())

    assert found is None


async def test_get_by_email_of_unknown_key_is_none(account_store: AccountStore) -> None:
    await account_store.add(make_account("ada@example.com"))

    found = await account_store.get_by_email("nobody@example.com")

    assert found is None


async def test_duplicate_email_key_conflicts(account_store: AccountStore) -> None:
    await account_store.add(make_account("ada@example.com"))

    with pytest.raises(ConflictError):
        await account_store.add(make_account("ADA@example.com", email_key="ada@example.com"))


async def test_duplicate_email_key_leaves_the_first_account_unchanged(
    account_store: AccountStore,
) -> None:
    first = make_account("ada@example.com", display_name="first")
    second = make_account("ADA@example.com", email_key="ada@example.com", display_name="second")
    await account_store.add(first)
    with pytest.raises(ConflictError):
        await account_store.add(second)

    by_email = await account_store.get_by_email("ada@example.com")
    by_second_id = await account_store.get(second.id)

    assert by_email == first
    assert by_second_id is None


async def test_update_changes_only_the_named_fields(account_store: AccountStore) -> None:
    account = make_account(display_name="old", role="member")
    await account_store.add(account)

    updated = await account_store.update(account.id, display_name="new", email_verified=True)

    assert updated is not None
    expected = dataclasses.replace(
        account, display_name="new", email_verified=True, updated_at=updated.updated_at
    )
    assert updated == expected
    assert await account_store.get(account.id) == updated


async def test_update_bumps_updated_at(account_store: AccountStore) -> None:
    account = make_account()
    await account_store.add(account)

    updated = await account_store.update(account.id, role="admin")

    assert updated is not None
    assert updated.updated_at > account.updated_at
    assert updated.updated_at.utcoffset() == timedelta(0)
    assert updated.created_at == account.created_at


async def test_update_can_clear_a_nullable_field(account_store: AccountStore) -> None:
    account = make_account(display_name="Ada")
    await account_store.add(account)

    updated = await account_store.update(account.id, display_name=None, password_hash=None)

    assert updated is not None
    assert updated.display_name is None
    assert updated.password_hash is None


async def test_update_of_unknown_id_is_none(account_store: AccountStore) -> None:
    account = make_account()
    await account_store.add(account)

    updated = await account_store.update(uuid4(), display_name="ghost")

    assert updated is None
    assert await account_store.get(account.id) == account


@pytest.mark.parametrize(
    "field",
    ["id", "created_at", "no_such_field"],
    ids=["id", "created_at", "unknown-field"],
)
async def test_update_refuses_fields_that_cannot_change(
    account_store: AccountStore, field: str
) -> None:
    account = make_account()
    await account_store.add(account)

    with pytest.raises(ValueError, match=field):
        await account_store.update(account.id, **{field: account.created_at})

    assert await account_store.get(account.id) == account


async def test_bump_token_version_increments_and_returns_it(
    account_store: AccountStore,
) -> None:
    account = make_account(token_version=3)
    await account_store.add(account)

    first = await account_store.bump_token_version(account.id, now=NOW)
    second = await account_store.bump_token_version(account.id, now=NOW)

    assert (first, second) == (4, 5)
    stored = await account_store.get(account.id)
    assert stored is not None
    assert stored.token_version == 5
    assert stored.tokens_revoked_at == NOW


async def test_concurrent_token_version_bumps_are_all_counted(
    account_store: AccountStore,
) -> None:
    account = make_account()
    await account_store.add(account)

    versions = await asyncio.gather(
        *(account_store.bump_token_version(account.id, now=NOW) for _ in range(20))
    )

    assert sorted(versions) == list(range(1, 21))
    stored = await account_store.get(account.id)
    assert stored is not None
    assert stored.token_version == 20


async def test_bump_token_version_touches_only_that_account(
    account_store: AccountStore,
) -> None:
    bumped = make_account("ada@example.com")
    other = make_account("grace@example.com")
    await account_store.add(bumped)
    await account_store.add(other)

    await account_store.bump_token_version(bumped.id, now=NOW)

    assert await account_store.get(other.id) == other


async def test_update_to_a_taken_email_key_raises_conflict(account_store: AccountStore) -> None:
    first = make_account(email="a@example.com")
    second = make_account(email="b@example.com")
    await account_store.add(first)
    await account_store.add(second)

    with pytest.raises(ConflictError):
        await account_store.update(second.id, email_key=first.email_key)

    stored = await account_store.get(second.id)
    assert stored is not None
    assert stored.email_key == second.email_key
