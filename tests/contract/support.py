"""Builders and types the contract suites share."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from uuid import uuid4

from bastion.stores import Account, Denial, SessionStore

# Given n, n session stores over the same data whose calls can race each other.
SessionStoresFactory = Callable[[int], Awaitable[list[SessionStore]]]


def make_account(email: str = "Ada@Example.com", **overrides: object) -> Account:
    created = datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)
    values: dict[str, object] = {
        "id": uuid4(),
        "email": email,
        "email_key": email.lower(),
        "password_hash": "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
        "created_at": created,
        "updated_at": created,
    }
    values.update(overrides)
    return Account(**values)  # type: ignore[arg-type]


async def no_denials() -> list[Denial]:
    """An empty durable record, to rebuild a revocation cache from."""
    return []
