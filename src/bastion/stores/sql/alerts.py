"""The SQL alert store (table ``security_alerts``, migration ``*_security_alerts``)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bastion.stores.alerts import Alert
from bastion.stores.sql.tables import SecurityAlertRow

__all__ = ["SQLAlertStore"]

_alerts = SecurityAlertRow.__table__  # type: ignore[attr-defined]
_COLUMNS = {
    "id": "id",
    "rule": "rule",
    "key": "alert_key",
    "count": "count",
    "window_seconds": "window_seconds",
    "first_event_at": "first_event_at",
    "last_event_at": "last_event_at",
    "severity": "severity",
    "created_at": "created_at",
}


class SQLAlertStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def add(self, alert: Alert) -> None:
        values = {column: getattr(alert, name) for name, column in _COLUMNS.items()}
        async with self._engine.begin() as conn:
            await conn.execute(sa.insert(_alerts).values(**values))

    async def recent(self, limit: int) -> list[Alert]:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        statement = (
            sa.select(*[_alerts.c[column] for column in _COLUMNS.values()])
            .order_by(_alerts.c.created_at.desc(), _alerts.c.id.desc())
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(statement)).all()
        return [
            Alert(**{name: row._mapping[column] for name, column in _COLUMNS.items()})
            for row in rows
        ]
