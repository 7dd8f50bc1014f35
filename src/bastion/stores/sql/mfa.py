"""Second factors in SQL (:class:`bastion.stores.base.MFAStore`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from bastion.stores.base import TOTPFactor
from bastion.stores.sql.stores import _SQLStore
from bastion.stores.sql.tables import AccountRow, RecoveryCodeRow, TOTPFactorRow

__all__ = ["SQLMFAStore"]

_factors = TOTPFactorRow.__table__  # type: ignore[attr-defined]
_codes = RecoveryCodeRow.__table__  # type: ignore[attr-defined]
_accounts = AccountRow.__table__  # type: ignore[attr-defined]


def _factor(row: Any) -> TOTPFactor:
    return TOTPFactor(row.user_id, row.secret, row.created_at, row.confirmed_at)


async def _replace_codes(conn: AsyncConnection, user_id: UUID, digests: Sequence[str]) -> None:
    await conn.execute(_codes.delete().where(_codes.c.user_id == user_id))
    if digests:
        rows = [{"user_id": user_id, "digest": d, "used_at": None} for d in digests]
        await conn.execute(_codes.insert(), rows)


class SQLMFAStore(_SQLStore):
    async def factor(self, user_id: UUID) -> TOTPFactor | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(_factors.select().where(_factors.c.user_id == user_id))
            ).first()
        return _factor(row) if row else None

    async def begin(self, factor: TOTPFactor) -> bool:
        # One statement: a new factor, or the pending one replaced; a confirmed one stays
        # (no row changes). Concurrent setups cannot collide on the key.
        insert = (
            postgresql.insert(_factors)
            if self._engine.dialect.name == "postgresql"
            else sqlite.insert(_factors)
        )
        statement = insert.values(
            user_id=factor.user_id,
            secret=factor.secret,
            created_at=factor.created_at,
            confirmed_at=factor.confirmed_at,
        )
        statement = statement.on_conflict_do_update(
            index_elements=[_factors.c.user_id],
            set_={"secret": statement.excluded.secret, "created_at": statement.excluded.created_at},
            where=_factors.c.confirmed_at.is_(None),
        )
        async with self._engine.begin() as conn:
            changed = await conn.execute(statement)
        return changed.rowcount == 1

    async def confirm(
        self, user_id: UUID, *, secret: str, now: datetime, recovery_digests: Sequence[str]
    ) -> bool:
        async with self._engine.begin() as conn:
            confirmed = await conn.execute(
                _factors.update()
                .where(
                    _factors.c.user_id == user_id,
                    _factors.c.secret == secret,
                    _factors.c.confirmed_at.is_(None),
                )
                .values(confirmed_at=now)
            )
            if confirmed.rowcount != 1:
                return False
            await _replace_codes(conn, user_id, recovery_digests)
            await conn.execute(
                _accounts.update()
                .where(_accounts.c.id == user_id)
                .values(mfa_enabled=True, updated_at=now)
            )
        return True

    async def remove(self, user_id: UUID) -> bool:
        async with self._engine.begin() as conn:
            removed = await conn.execute(_factors.delete().where(_factors.c.user_id == user_id))
            await conn.execute(_codes.delete().where(_codes.c.user_id == user_id))
            await conn.execute(
                _accounts.update().where(_accounts.c.id == user_id).values(mfa_enabled=False)
            )
        return bool(removed.rowcount)

    async def use_recovery_code(self, user_id: UUID, digest: str, *, now: datetime) -> bool:
        async with self._engine.begin() as conn:
            spent = await conn.execute(
                _codes.update()
                .where(
                    _codes.c.user_id == user_id,
                    _codes.c.digest == digest,
                    _codes.c.used_at.is_(None),
                )
                .values(used_at=now)
            )
        return spent.rowcount == 1

    async def has_recovery_code(self, user_id: UUID, digest: str) -> bool:
        query = sa.select(_codes.c.digest).where(
            _codes.c.user_id == user_id, _codes.c.digest == digest, _codes.c.used_at.is_(None)
        )
        async with self._engine.connect() as conn:
            return (await conn.execute(query)).first() is not None

    async def replace_recovery_codes(self, user_id: UUID, digests: Sequence[str]) -> None:
        async with self._engine.begin() as conn:
            await _replace_codes(conn, user_id, digests)

    async def recovery_codes_left(self, user_id: UUID) -> int:
        query = sa.select(sa.func.count()).where(
            _codes.c.user_id == user_id, _codes.c.used_at.is_(None)
        )
        async with self._engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())
