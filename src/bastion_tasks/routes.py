"""The ``/tasks`` routes: owner-only access; another user's task answers 404."""

# No ``from __future__ import annotations`` here: FastAPI must resolve the local
# ``Authenticated`` alias of each factory at definition time.

from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response

from bastion.accounts import Principal
from bastion.fastapi import Guard, validation_problem
from bastion_tasks.schemas import TaskCreate, TaskList, TaskOut, TaskUpdate
from bastion_tasks.services import InvalidCursorError, TaskService

__all__ = ["tasks_router"]

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Invalid token"},
    404: {"description": "No such task, or not the caller's"},
    422: {"description": "Validation error"},
}


def tasks_router(guard: Guard, tasks: TaskService) -> APIRouter:
    router = APIRouter(prefix="/tasks", tags=["tasks"], responses=_ERRORS)
    Authenticated = Annotated[Principal, Depends(guard.principal)]

    @router.post("", status_code=201, response_model=TaskOut, summary="Create a task")
    async def create_task(body: TaskCreate, principal: Authenticated) -> TaskOut:
        return await tasks.create(principal.user_id, body)

    @router.get("", response_model=TaskList, summary="List the caller's tasks")
    async def list_tasks(
        request: Request,
        principal: Authenticated,
        status: Literal["todo", "in_progress", "done"] | None = None,
        q: Annotated[str | None, Query(max_length=200)] = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        cursor: Annotated[str | None, Query(max_length=512)] = None,
    ) -> Any:
        try:
            items, next_cursor = await tasks.list(
                principal.user_id, status=status, q=q, limit=limit, cursor=cursor
            )
        except InvalidCursorError:
            return validation_problem(
                request, [{"loc": ["query", "cursor"], "msg": "invalid cursor"}]
            )
        return TaskList(items=items, next_cursor=next_cursor)

    @router.get("/{task_id}", response_model=TaskOut, summary="Read a task")
    async def get_task(task_id: UUID, principal: Authenticated) -> TaskOut:
        return await tasks.get(principal.user_id, task_id)

    @router.patch("/{task_id}", response_model=TaskOut, summary="Change a task")
    async def update_task(task_id: UUID, body: TaskUpdate, principal: Authenticated) -> TaskOut:
        return await tasks.update(principal.user_id, task_id, body)

    @router.delete("/{task_id}", status_code=204, summary="Delete a task")
    async def delete_task(task_id: UUID, principal: Authenticated) -> Response:
        await tasks.delete(principal.user_id, task_id)
        return Response(status_code=204)

    return router
