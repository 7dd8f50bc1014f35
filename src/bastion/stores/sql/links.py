"""Identities at external sign-in providers, in SQL
(:class:`bastion.stores.base.ExternalLinkStore`)."""

from __future__ import annotations

import dataclasses
from typing import Any
from uuid import UUID

from sqlalchemy.exc import IntegrityError

from bastion.errors import ConflictError
from bastion.stores.base import Account, ExternalLink
from bastion.stores.sql.stores import _SQLStore
from bastion.stores.sql.tables import AccountRow, ExternalIdentityRow

__all__ = ["SQLExternalLinkStore"]

_links = ExternalIdentityRow.__table__  # type: ignore[attr-defined]
_accounts = AccountRow.__table__  # type: ignore[attr-defined]


def _insert(link: ExternalLink) -> Any:
    return _links.insert().values(**dataclasses.asdict(link))  # the fields are the columns


def _link(row: Any) -> ExternalLink:
    return ExternalLink(row.provider, row.subject, row.user_id, row.email, row.created_at)


class SQLExternalLinkStore(_SQLStore):
    async def find(self, provider: str, subject: str) -> ExternalLink | None:
        query = _links.select().where(_links.c.provider == provider, _links.c.subject == subject)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _link(row) if row else None

    async def of_user(self, user_id: UUID) -> list[ExternalLink]:
        query = (
            _links.select()
            .where(_links.c.user_id == user_id)
            .order_by(_links.c.created_at, _links.c.provider)
        )
        async with self._engine.connect() as conn:
            return [_link(row) for row in await conn.execute(query)]

    async def add(self, link: ExternalLink) -> None:
        try:
            async with self._engine.begin() as conn:
                await conn.execute(_insert(link))
        except IntegrityError as exc:
            raise ConflictError("identity already linked") from exc

    async def add_with_account(self, account: Account, link: ExternalLink) -> bool:
        try:
            async with self._engine.begin() as conn:
                await conn.execute(_accounts.insert().values(**dataclasses.asdict(account)))
                await conn.execute(_insert(link))
        except IntegrityError:
            return False  # the transaction rolled back: neither is stored
        return True

    async def remove(self, user_id: UUID, provider: str) -> bool:
        query = _links.delete().where(_links.c.user_id == user_id, _links.c.provider == provider)
        async with self._engine.begin() as conn:
            return bool((await conn.execute(query)).rowcount)
