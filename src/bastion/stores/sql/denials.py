"""The durable record of revocations in SQL (:class:`bastion.stores.base.DenialStore`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from bastion.stores.base import Denial
from bastion.stores.sql.stores import _SQLStore
from bastion.stores.sql.tables import AuthSessionRow, TokenDenialRow

__all__ = ["SQLDenialStore"]

_denials = TokenDenialRow.__table__  # type: ignore[attr-defined]
_sessions = AuthSessionRow.__table__  # type: ignore[attr-defined]
_SWEEP = 100  # expired denials purged with each new one


class SQLDenialStore(_SQLStore):
    async def deny(self, token_id: str, expires_at: datetime, *, now: datetime) -> None:
        async with self._engine.begin() as conn:
            on_postgres = conn.dialect.name == "postgresql"
            insert = (postgresql if on_postgres else sqlite).insert(_denials)
            insert = insert.values(token_id=token_id, expires_at=expires_at)
            # A second denial of the same id keeps the later expiry.
            later = (sa.func.greatest if on_postgres else sa.func.max)(
                _denials.c.expires_at, insert.excluded.expires_at
            )
            await conn.execute(
                insert.on_conflict_do_update(
                    index_elements=["token_id"], set_={"expires_at": later}
                )
            )
            await _purge(conn, now, _SWEEP)

    async def denied(self, *, now: datetime) -> list[Denial]:
        query = sa.select(_denials.c.token_id, _denials.c.expires_at).where(
            _denials.c.expires_at > now
        )
        async with self._engine.connect() as conn:
            return [(row.token_id, row.expires_at) for row in await conn.execute(query)]

    async def revoked_sessions(self, *, since: datetime) -> list[tuple[UUID, datetime]]:
        query = sa.select(_sessions.c.id, _sessions.c.revoked_at).where(
            _sessions.c.revoked_at > since
        )
        async with self._engine.connect() as conn:
            return [(row.id, row.revoked_at) for row in await conn.execute(query)]

    async def purge(self, *, now: datetime, limit: int = 1000) -> int:
        async with self._engine.begin() as conn:
            return await _purge(conn, now, limit)


async def _purge(conn: Any, now: datetime, limit: int) -> int:
    """Delete at most ``limit`` expired denials (a bounded sweep: no long lock)."""
    expired = (
        sa.select(_denials.c.token_id).where(_denials.c.expires_at <= now).limit(limit)
    ).scalar_subquery()
    result = await conn.execute(_denials.delete().where(_denials.c.token_id.in_(expired)))
    return int(result.rowcount)
