"""The ``/tasks`` routes. Each declares its requirement; object routes name the rule of
:mod:`bastion_tasks.policies` that the guard checks before the handler runs."""

# No ``from __future__ import annotations`` here: FastAPI must resolve the local
# aliases of each factory at definition time.

from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response

from bastion.accounts import Principal
from bastion.authz import Permission
from bastion.cursors import InvalidCursorError
from bastion.fastapi import Authorized, Guard, validation_problem
from bastion_tasks.policies import (
    DELETE,
    EDIT,
    MANAGE_SHARES,
    VIEW,
    VIEW_SHARES,
    TaskResolver,
)
from bastion_tasks.schemas import (
    ShareIn,
    ShareOut,
    TaskAdminUpdate,
    TaskCreate,
    TaskList,
    TaskOut,
    TaskUpdate,
)
from bastion_tasks.services import Scope, TaskService, UnknownOwnerError

__all__ = ["tasks_router"]

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Invalid token"},
    403: {"description": "The caller may see the task but not do this"},
    404: {"description": "No such task, or one the caller may not see"},
    422: {"description": "Validation error"},
}


def tasks_router(guard: Guard, tasks: TaskService) -> APIRouter:
    router = APIRouter(prefix="/tasks", tags=["tasks"], responses=_ERRORS)
    resolver = TaskResolver(tasks)
    Reader = Annotated[Principal, guard.require(Permission.READ)]
    Creator = Annotated[Principal, guard.require(Permission.CREATE)]
    CanView = Annotated[Authorized[TaskOut], guard.require_object(VIEW, resolver)]
    CanEdit = Annotated[Authorized[TaskOut], guard.require_object(EDIT, resolver)]
    CanDelete = Annotated[Authorized[TaskOut], guard.require_object(DELETE, resolver)]
    CanViewShares = Annotated[Authorized[TaskOut], guard.require_object(VIEW_SHARES, resolver)]
    CanShare = Annotated[Authorized[TaskOut], guard.require_object(MANAGE_SHARES, resolver)]

    def scope(principal: Principal) -> Scope:
        return Scope(principal.user_id, every_task=guard.roles.acts_on_every_object(principal.role))

    @router.post("", status_code=201, response_model=TaskOut, summary="Create a task")
    async def create_task(body: TaskCreate, principal: Creator) -> TaskOut:
        return await tasks.create(principal.user_id, body)

    @router.get(
        "",
        response_model=TaskList,
        summary="List the tasks the caller may see (own and shared; every task for admins)",
    )
    async def list_tasks(
        request: Request,
        principal: Reader,
        status: Literal["todo", "in_progress", "done"] | None = None,
        q: Annotated[str | None, Query(max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")] = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        cursor: Annotated[str | None, Query(max_length=512)] = None,
    ) -> Any:
        try:
            items, next_cursor = await tasks.page(
                scope(principal), status=status, q=q, limit=limit, cursor=cursor
            )
        except InvalidCursorError:
            return validation_problem(
                request, [{"loc": ["query", "cursor"], "msg": "invalid cursor"}]
            )
        return TaskList(items=items, next_cursor=next_cursor)

    @router.get("/{task_id}", response_model=TaskOut, summary="Read a task")
    async def get_task(task_id: UUID, access: CanView) -> TaskOut:
        return access.resource

    @router.patch(
        "/{task_id}",
        response_model=TaskOut,
        summary="Change a task (owner, edit share, or admin; owner_id: admins only)",
    )
    async def update_task(
        task_id: UUID, body: TaskAdminUpdate, request: Request, access: CanEdit
    ) -> Any:
        caller = scope(access.principal)
        is_admin = caller.every_task
        if "owner_id" in body.model_fields_set and not is_admin:
            # OWASP API3:2023: a property the caller's role may not set is refused, and
            # the row is left as it was.
            return validation_problem(
                request,
                [{"loc": ["body", "owner_id"], "msg": "only an admin may change the owner"}],
            )
        data = body if is_admin else TaskUpdate.model_validate(body.model_dump(exclude_unset=True))
        try:
            return await tasks.update(task_id, data, caller)
        except UnknownOwnerError:
            return validation_problem(
                request, [{"loc": ["body", "owner_id"], "msg": "no such account"}]
            )

    @router.delete("/{task_id}", status_code=204, summary="Delete a task (owner or admin)")
    async def delete_task(task_id: UUID, access: CanDelete) -> Response:
        await tasks.delete(task_id, scope(access.principal))
        return Response(status_code=204)

    @router.get(
        "/{task_id}/shares",
        response_model=list[ShareOut],
        summary="Who the task is shared with (owner or admin)",
    )
    async def list_shares(task_id: UUID, access: CanViewShares) -> list[ShareOut]:
        return await tasks.shares(task_id)

    @router.post(
        "/{task_id}/shares",
        status_code=201,
        response_model=ShareOut,
        summary="Share the task by email, read or edit (owner or admin)",
        description=(
            "The answer is the same whether or not the address has an account: an "
            "address without one gets a reserved account id, which the account takes "
            "when the address registers; a share stays pending until the address is "
            "verified."
        ),
    )
    async def share_task(task_id: UUID, body: ShareIn, request: Request, access: CanShare) -> Any:
        # The owner check comes first, so that a refused request reserves nothing; an
        # invalid address raises InvalidEmailError, a 422 about ``email``.
        if await guard.service.admin.peek_account_id(body.email) == access.resource.owner_id:
            return validation_problem(
                request,
                [{"loc": ["body", "email"], "msg": "the task's owner has it already"}],
            )
        user_id, has_account = await guard.service.admin.resolve_account_id(body.email)
        # Read for either kind of id (the same work): only a verified address gets the
        # share at once, so registering someone's address first gains nothing.
        account = await guard.service.admin.get_account(user_id)
        verified = has_account and account is not None and account.email_verified
        share = await tasks.share(
            task_id,
            user_id,
            body.permission,
            by=access.principal.user_id,
            pending=not verified,
        )
        await guard.events.emit(
            "share_granted",
            context=guard.context(request),
            user_id=str(access.principal.user_id),
            details=f"task {task_id} shared with {user_id} ({body.permission})",
            severity="low",
        )
        return share

    @router.delete(
        "/{task_id}/shares/{user_id}",
        status_code=204,
        summary="Stop sharing the task with a user (owner or admin)",
    )
    async def unshare_task(
        task_id: UUID, user_id: UUID, request: Request, access: CanShare
    ) -> Response:
        await tasks.unshare(task_id, user_id)
        await guard.events.emit(
            "share_revoked",
            context=guard.context(request),
            user_id=str(access.principal.user_id),
            details=f"task {task_id} no longer shared with {user_id}",
            severity="low",
        )
        return Response(status_code=204)

    return router
