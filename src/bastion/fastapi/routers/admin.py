"""The ``/admin`` routes of accounts: list, change role or active flag, revoke sessions,
the guard's decision for any user and request, the security events
(:mod:`bastion.fastapi.routers.security_events`) and alerts
(:mod:`bastion.fastapi.routers.security_alerts`). ADMIN only."""

# No ``from __future__ import annotations`` here: FastAPI must resolve the local
# ``Admin`` alias of each factory at definition time.

from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response

from bastion.accounts import Principal
from bastion.authz import Permission
from bastion.cursors import InvalidCursorError, decode_cursor, encode_cursor
from bastion.fastapi.dependencies import Guard
from bastion.fastapi.problems import validation_problem
from bastion.fastapi.routers.security_alerts import security_alerts_router
from bastion.fastapi.routers.security_events import security_events_router
from bastion.fastapi.schemas import AdminUserList, AdminUserOut, AdminUserPatch, DecisionOut

__all__ = ["admin_router"]

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Invalid token"},
    403: {"description": "The caller's role lacks ADMIN"},
    422: {"description": "Validation error"},
}


def admin_router(guard: Guard) -> APIRouter:
    router = APIRouter(prefix="/admin", tags=["admin"], responses=_ERRORS)
    Admin = Annotated[Principal, guard.require(Permission.ADMIN)]
    # A change of role or standing is sensitive: the admin signed in recently.
    SteppedUpAdmin = Annotated[Principal, guard.require(Permission.ADMIN, step_up=True)]
    service = guard.service

    @router.get("/users", response_model=AdminUserList, summary="List accounts, oldest first")
    async def list_users(
        request: Request,
        admin: Admin,
        role: Literal["viewer", "member", "admin"] | None = None,
        is_active: bool | None = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 50,
        cursor: Annotated[str | None, Query(max_length=512)] = None,
    ) -> Any:
        try:
            after = decode_cursor(cursor) if cursor else None
        except InvalidCursorError:
            return validation_problem(
                request, [{"loc": ["query", "cursor"], "msg": "invalid cursor"}]
            )
        accounts = await service.admin.list_accounts(
            limit=limit + 1, after=after, role=role, is_active=is_active
        )
        page = accounts[:limit]
        more = len(accounts) > limit
        return AdminUserList(
            items=[AdminUserOut.model_validate(a) for a in page],
            next_cursor=encode_cursor(page[-1].created_at, page[-1].id) if more else None,
        )

    @router.patch(
        "/users/{user_id}",
        response_model=AdminUserOut,
        summary="Change an account's role or active flag",
        responses={
            404: {"description": "No such account"},
            409: {"description": "The change would leave no active admin"},
        },
    )
    async def patch_user(
        user_id: UUID, body: AdminUserPatch, request: Request, admin: SteppedUpAdmin
    ) -> AdminUserOut:
        account = await service.admin.change_standing(
            admin,
            user_id,
            role=body.role,
            is_active=body.is_active,
            context=guard.context(request),
        )
        return AdminUserOut.model_validate(account)

    @router.post(
        "/users/{user_id}/revoke-sessions",
        status_code=204,
        summary="End every session and access token of an account",
        responses={404: {"description": "No such account"}},
    )
    async def revoke_sessions(user_id: UUID, request: Request, admin: Admin) -> Response:
        await service.sessions.revoke_sessions(admin, user_id, context=guard.context(request))
        return Response(status_code=204)

    @router.post(
        "/users/{user_id}/unlock",
        status_code=204,
        summary="End a lock after failed logins and forget the account's failures",
        responses={404: {"description": "No such account"}},
    )
    async def unlock(user_id: UUID, request: Request, admin: Admin) -> Response:
        await service.login.unlock(admin, user_id, context=guard.context(request))
        return Response(status_code=204)

    @router.get(
        "/security/decision",
        response_model=DecisionOut,
        summary="What the guard would decide for a user and request, and why",
    )
    async def decision(
        request: Request,
        admin: Admin,
        user_id: UUID,
        method: Annotated[str, Query(pattern=r"^[A-Za-z]{1,16}$")],
        path: Annotated[str, Query(min_length=1, max_length=2048, pattern=r"^/")],
    ) -> DecisionOut:
        answer = await guard.explain(request.app.routes, user_id, method, path)
        return DecisionOut(**answer.to_dict())

    router.include_router(security_events_router(guard))
    router.include_router(security_alerts_router(guard))
    return router
