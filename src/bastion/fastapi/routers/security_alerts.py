"""``GET /admin/security/alerts``: the alerts the rules raised, newest first. ADMIN only.

An alert summarises a burst of security events (:mod:`bastion.alerts`); the events
themselves stay readable at ``GET /admin/security/events``. Reading the alerts is part of
the audit trail too, as ``security_events_read`` with ``{"alerts": true}`` in its filters
(OWASP Logging Cheat Sheet, "Which events to log"; ASVS 7.3.3).
"""

# No ``from __future__ import annotations`` here: FastAPI must resolve the local
# ``Admin`` alias of the factory at definition time.

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from bastion.accounts import Principal
from bastion.authz import Permission
from bastion.fastapi.dependencies import Guard
from bastion.stores import Severity

__all__ = ["SecurityAlertOut", "security_alerts_router"]


class SecurityAlertOut(BaseModel):
    """One alert: ``count`` events of ``rule`` for ``key`` within ``window_seconds``."""

    model_config = ConfigDict(from_attributes=True)

    id: UUID
    rule: str = Field(description="The rule that raised the alert")
    key: str = Field(description="What the rule counts by: an IP address or a user id")
    count: int = Field(description="How many events were counted when it fired")
    window_seconds: int
    first_event_at: datetime
    last_event_at: datetime
    severity: Severity
    created_at: datetime


def security_alerts_router(guard: Guard) -> APIRouter:
    """The route, to be included under ``/admin`` (which documents 401, 403 and 422)."""
    router = APIRouter()
    Admin = Annotated[Principal, guard.require(Permission.ADMIN)]
    store = guard.service.stores.alerts

    @router.get(
        "/security/alerts",
        response_model=list[SecurityAlertOut],
        summary="Security alerts raised by the alert rules, newest first",
        responses={422: {"description": "The limit is invalid"}},
    )
    async def list_alerts(
        request: Request,
        admin: Admin,
        limit: Annotated[int, Query(ge=1, le=100, description="How many alerts")] = 50,
    ) -> list[SecurityAlertOut]:
        alerts = await store.recent(limit)
        guard.events.emit_soon(
            "security_events_read",
            context=guard.context(request),
            user_id=str(admin.user_id),
            details=f"{len(alerts)} alerts read",
            filters={"alerts": True, "limit": limit},
        )
        return [SecurityAlertOut.model_validate(alert) for alert in alerts]

    return router
