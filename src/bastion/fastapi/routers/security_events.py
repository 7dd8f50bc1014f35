"""``GET /admin/security/events``: the stored security events, newest first. ADMIN only.

Pages are keyset pages on (timestamp, id): the opaque cursor names the last event of a
page, so the next page starts right after it however many events arrive meanwhile (no
duplicates, no gaps, unlike offsets).

Reading the log is itself recorded, as ``security_events_read`` (low severity) with the
filters used: who looked at which part of the audit trail is part of the trail (OWASP
Logging Cheat Sheet, "Which events to log": use of administrative privileges and access
to sensitive data; ASVS 7.3.3, logs protected from unauthorized access). Every page read
counts, so a script that pages through the whole log shows as many reads.
"""

# No ``from __future__ import annotations`` here: FastAPI must resolve the local
# ``Admin`` alias of the factory at definition time.

import json
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request

from bastion.accounts import Principal
from bastion.authz import Permission
from bastion.cursors import InvalidCursorError, decode_event_cursor, encode_event_cursor
from bastion.events import event_to_dict
from bastion.fastapi.dependencies import Guard
from bastion.fastapi.event_schemas import (
    EventTime,
    EventTypeFilter,
    IPFilter,
    SecurityEventList,
    SecurityEventOut,
)
from bastion.fastapi.problems import validation_problem
from bastion.stores import EventQuery, SecurityEvent

__all__ = ["security_events_router"]


def security_events_router(guard: Guard) -> APIRouter:
    """The route, to be included under ``/admin`` (which documents 401, 403 and 422)."""
    router = APIRouter()
    Admin = Annotated[Principal, guard.require(Permission.ADMIN)]
    store = guard.service.stores.events

    @router.get(
        "/security/events",
        response_model=SecurityEventList,
        summary="Stored security events, newest first, filtered and paged",
        responses={
            422: {"description": "A filter, the limit or the cursor is invalid"},
        },
    )
    async def list_events(
        request: Request,
        admin: Admin,
        event_type: Annotated[
            EventTypeFilter | None, Query(description="Only events of this type")
        ] = None,
        user_id: Annotated[UUID | None, Query(description="Only events of this user")] = None,
        ip_address: Annotated[
            IPFilter | None, Query(description="Only events from this IPv4 or IPv6 address")
        ] = None,
        since: Annotated[
            EventTime | None, Query(description="Events at or after this time (RFC 3339)")
        ] = None,
        until: Annotated[
            EventTime | None, Query(description="Events before this time (RFC 3339)")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=100, description="Page size")] = 50,
        cursor: Annotated[
            str | None, Query(max_length=512, description="The previous page's next_cursor")
        ] = None,
    ) -> Any:
        if since is not None and until is not None and since > until:
            return validation_problem(
                request, [{"loc": ["query", "since"], "msg": "since is after until"}]
            )
        try:
            before = decode_event_cursor(cursor) if cursor else None
        except InvalidCursorError:
            return validation_problem(
                request, [{"loc": ["query", "cursor"], "msg": "invalid cursor"}]
            )
        filters = {
            "event_type": event_type,
            "user_id": str(user_id) if user_id is not None else None,
            "ip_address": ip_address,
        }
        query = EventQuery(
            event_type=filters["event_type"],
            user_id=filters["user_id"],
            ip_address=filters["ip_address"],
            since=since,
            until=until,
            before=before,
            limit=limit + 1,
        )
        found = await store.query(query)
        page = found[:limit]
        more = len(found) > limit
        last = page[-1] if page else None
        guard.events.emit_soon(
            "security_events_read",
            context=guard.context(request),
            user_id=str(admin.user_id),
            details=f"{len(page)} events read",
            filters={
                **{name: value for name, value in filters.items() if value is not None},
                **({"since": since.isoformat()} if since else {}),
                **({"until": until.isoformat()} if until else {}),
                "next_page": cursor is not None,
            },
        )
        return SecurityEventList(
            items=[_item(event) for event in page],
            next_cursor=_cursor(last) if more and last is not None else None,
        )

    return router


def _item(event: SecurityEvent) -> SecurityEventOut:
    # Through JSON as the SQL store keeps extra fields, so that every backend answers
    # alike (a value that is not JSON becomes its text).
    return SecurityEventOut.model_validate(
        json.loads(json.dumps(event_to_dict(event), default=str))
    )


def _cursor(event: SecurityEvent) -> str:
    assert event.id is not None  # a store numbers every event it returns
    return encode_event_cursor(event.timestamp, event.id)
