"""The ExternalLinkStore contract (identities at sign-in providers linked to accounts),
on memory, SQLite and PostgreSQL: an identity is linked once, to one account; an account
has at most one identity per provider; unlinking removes only the one asked for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from bastion.errors import ConflictError
from bastion.stores import ExternalLink, ExternalLinkStore, Stores
from tests.contract.support import make_account

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@pytest.fixture
def links(stores: Stores) -> ExternalLinkStore:
    return stores.links


def link(
    user_id: UUID, provider: str = "google", subject: str = "sub-1", **kw: object
) -> ExternalLink:
    values: dict[str, object] = {"email": "owner@example.com", "created_at": NOW} | kw
    return ExternalLink(provider, subject, user_id, **values)  # type: ignore[arg-type]


async def test_a_linked_identity_is_found_by_provider_and_subject(
    links: ExternalLinkStore, user_id: UUID
) -> None:
    await links.add(link(user_id))

    found = await links.find("google", "sub-1")

    assert found == link(user_id)
    assert await links.find("google", "sub-2") is None
    assert await links.find("github", "sub-1") is None  # subjects are per provider


async def test_an_identity_is_linked_to_one_account_only(
    links: ExternalLinkStore, user_id: UUID, stores: Stores
) -> None:
    other = make_account("other@example.com")
    await stores.accounts.add(other)
    await links.add(link(user_id))

    with pytest.raises(ConflictError):
        await links.add(link(other.id))

    assert (await links.find("google", "sub-1")) == link(user_id)
    assert await links.of_user(other.id) == []


async def test_an_account_has_one_identity_per_provider(
    links: ExternalLinkStore, user_id: UUID
) -> None:
    await links.add(link(user_id))

    with pytest.raises(ConflictError):
        await links.add(link(user_id, subject="sub-2"))
    await links.add(link(user_id, provider="github", subject="42", created_at=NOW + timedelta(1)))

    assert [(x.provider, x.subject) for x in await links.of_user(user_id)] == [
        ("google", "sub-1"),
        ("github", "42"),
    ]


async def test_unlinking_removes_only_that_providers_identity(
    links: ExternalLinkStore, user_id: UUID
) -> None:
    await links.add(link(user_id))
    await links.add(link(user_id, provider="github", subject="42"))

    assert await links.remove(user_id, "google") is True
    assert await links.remove(user_id, "google") is False

    assert await links.find("google", "sub-1") is None
    assert [x.provider for x in await links.of_user(user_id)] == ["github"]
    await links.add(link(user_id, subject="sub-9"))  # the provider may be linked again
