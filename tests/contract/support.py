"""Builders and types the contract suites share."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

from bastion.accounts import AccountService
from bastion.clock import FrozenClock
from bastion.events import EventLog
from bastion.passwords import TEST_ONLY_INSECURE, PasswordHasher, PasswordPolicy
from bastion.stores import Account, Denial, SessionStore, Stores
from bastion.tokens import AccessTokens, KeySet

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


@asynccontextmanager
async def account_service(
    stores: Stores, clock: FrozenClock, **options: Any
) -> AsyncIterator[AccountService]:
    """An AccountService over ``stores`` with fast hashing and fresh keys; its events
    are drained at the end."""
    events = EventLog(clock=clock)
    yield AccountService(
        stores,
        hasher=PasswordHasher(TEST_ONLY_INSECURE),
        policy=PasswordPolicy(),
        access_tokens=AccessTokens(
            KeySet.generate(clock=clock),
            issuer="https://bastion.test",
            audience="bastion-api",
            ttl=timedelta(minutes=15),
            clock=clock,
        ),
        events=events,
        clock=clock,
        **options,
    )
    await events.drain()
