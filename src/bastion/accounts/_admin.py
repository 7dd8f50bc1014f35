"""Reading and changing accounts: an admin's changes of standing, the one way every
account change is applied (:meth:`AccountAdmin.apply`), lookups and the profile."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime

from bastion.accounts._authenticator import Authenticator
from bastion.accounts._emails import normalize_email
from bastion.accounts._types import ROLES, Principal
from bastion.authz import Subject
from bastion.clock import Clock
from bastion.errors import InvalidTokenError
from bastion.events import EventLog, RequestContext
from bastion.stores import Account, AccountChange, SecurityEvent, Stores

__all__ = ["AccountAdmin"]

EventsOf = Callable[[Account, Account], Sequence[SecurityEvent | None]]


class AccountAdmin:
    """Accounts as records: changed with their events in one transaction, the requests'
    cached standing kept in step (through the :class:`Authenticator`)."""

    def __init__(
        self, stores: Stores, events: EventLog, clock: Clock, authenticator: Authenticator
    ) -> None:
        self._stores = stores
        self._events = events
        self._clock = clock
        self._authenticator = authenticator

    async def apply(self, user_id: uuid.UUID, change: AccountChange, events: EventsOf) -> Account:
        """Apply ``change`` with the events built from the account before and after it,
        in one transaction; the cached standing is dropped first and written after."""
        stored: list[SecurityEvent] = []

        def collect(before: Account, after: Account) -> list[SecurityEvent]:
            stored[:] = [e for e in events(before, after) if e is not None]
            return stored

        # Forget the cached state first: should the change fail half-way (Redis down
        # after the commit), the next request reads the database, never a stale grant.
        # The change bumps the token version, and cache writes never replace a higher
        # version: a login or request that read the account before the commit cannot
        # write its older state back afterwards.
        await self._authenticator.forget(user_id)
        account = await self._stores.accounts.change(
            user_id, change, now=self._clock.now(), events=collect
        )
        for event in stored:
            await self._events.publish(event, stored=True)
        await self._authenticator.remember(account)
        return account

    async def change_standing(
        self,
        actor: Principal,
        user_id: uuid.UUID,
        *,
        role: str | None = None,
        is_active: bool | None = None,
        context: RequestContext,
    ) -> Account:
        """Change an account's role or active flag; events in the same transaction.

        Every change bumps the token version, so the account's access tokens die with
        the standing they were issued for (a refresh issues one with the new role);
        disabling an account also ends its sessions (ASVS 7.4.2). Every request checks
        the stored role and state as well.

        Raises:
            NotFoundError: no such account.
            LastAdminError: the change would leave no active admin.
        """
        if role is not None and role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        change = AccountChange(
            role=role,
            is_active=is_active,
            revoke_sessions=is_active is False,
            reason="account disabled",
        )

        def events(before: Account, after: Account) -> list[SecurityEvent | None]:
            built: list[SecurityEvent | None] = []
            if before.role != after.role:
                built.append(
                    self._events.build(
                        "role_changed",
                        context=context,
                        user_id=str(actor.user_id),
                        details=f"role of {after.id} changed from {before.role} to {after.role}",
                        old_role=before.role,
                        new_role=after.role,
                        target_user_id=str(after.id),
                    )
                )
            if before.is_active != after.is_active:
                built.append(
                    self._events.build(
                        "account_enabled" if after.is_active else "account_disabled",
                        context=context,
                        user_id=str(actor.user_id),
                        details=f"account {after.id} "
                        + ("enabled" if after.is_active else "disabled, its sessions revoked"),
                        target_user_id=str(after.id),
                    )
                )
            return built

        return await self.apply(user_id, change, events)

    async def list_accounts(
        self,
        *,
        limit: int,
        after: tuple[datetime, uuid.UUID] | None = None,
        role: str | None = None,
        is_active: bool | None = None,
    ) -> list[Account]:
        return await self._stores.accounts.page(
            limit=limit, after=after, role=role, is_active=is_active
        )

    async def resolve_account_id(self, email: str) -> tuple[uuid.UUID, bool]:
        """The account id for ``email`` and True, or an id reserved for it (until it
        registers) and False. Both cost the same database work.

        Raises:
            InvalidEmailError: not an email address.
        """
        _, key = normalize_email(email, new=True)
        resolved = await self._stores.accounts.resolve_id(key, reserve=True)
        assert resolved is not None
        return resolved

    async def peek_account_id(self, email: str) -> uuid.UUID | None:
        """The account or reserved id of ``email`` without reserving one."""
        _, key = normalize_email(email)
        resolved = await self._stores.accounts.resolve_id(key, reserve=False)
        return resolved[0] if resolved else None

    async def subject(self, user_id: uuid.UUID) -> Subject | None:
        """The stored standing of ``user_id``, for decisions about a user who is not the
        caller (the admin decision endpoint)."""
        account = await self._stores.accounts.get(user_id)
        if account is None:
            return None
        return Subject(account.id, account.role, account.is_active)

    async def get_account(self, user_id: uuid.UUID) -> Account | None:
        return await self._stores.accounts.get(user_id)

    async def update_profile(self, user_id: uuid.UUID, *, display_name: str | None) -> Account:
        account = await self._stores.accounts.update(user_id, display_name=display_name)
        if account is None:
            raise InvalidTokenError("unknown subject")
        return account
