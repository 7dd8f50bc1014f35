"""Stored security alerts: the record, the :class:`AlertStore` protocol, the memory store.

An alert is what :mod:`bastion.alerts` raises when a rule's threshold is reached: it is
kept in the database (``security_alerts``) so that admins read it with the events it
summarises (``GET /admin/security/alerts``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

from bastion.stores.base import Severity

__all__ = ["Alert", "AlertStore", "MemoryAlertStore"]


@dataclass(frozen=True)
class Alert:
    """``count`` events of rule ``rule`` for ``key`` (an IP address or a user id) within
    ``window_seconds``, the first and last of them at ``first_event_at`` and
    ``last_event_at``."""

    id: UUID
    rule: str
    key: str
    count: int
    window_seconds: int
    first_event_at: datetime
    last_event_at: datetime
    severity: Severity
    created_at: datetime


class AlertStore(Protocol):
    async def add(self, alert: Alert) -> None:
        """Store ``alert``."""
        ...

    async def recent(self, limit: int) -> list[Alert]:
        """At most ``limit`` (at least 1) alerts, newest first by (created_at, id)."""
        ...


class MemoryAlertStore:
    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    async def add(self, alert: Alert) -> None:
        self.alerts.append(alert)

    async def recent(self, limit: int) -> list[Alert]:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        ordered = sorted(self.alerts, key=lambda a: (a.created_at, a.id), reverse=True)
        return ordered[:limit]
