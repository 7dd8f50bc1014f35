"""Task storage and queries. Every query applies the caller's access in SQL, never after,
so that pagination stays correct and no row the caller may not see is ever read."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bastion.accounts import EmailVerified
from bastion.clock import Clock, SystemClock
from bastion.cursors import decode_cursor, encode_cursor
from bastion.errors import NotFoundError
from bastion_tasks.models import TaskRow, TaskShareRow
from bastion_tasks.schemas import ShareOut, TaskCreate, TaskOut, TaskUpdate

__all__ = ["DeleteHook", "Scope", "TaskService", "UnknownOwnerError"]

_tasks = TaskRow.__table__  # type: ignore[attr-defined]
_shares = TaskShareRow.__table__  # type: ignore[attr-defined]

# A task and the caller's accepted share of it, built once: a statement built per request
# (with its own alias) cost about a tenth of a task read in the profile (docs/performance.md).
_caller_share = _shares.alias("caller_share")
_FIND = (
    sa.select(_tasks, _caller_share.c.permission.label("share_permission"))
    .select_from(
        _tasks.outerjoin(
            _caller_share,
            sa.and_(
                _caller_share.c.task_id == _tasks.c.id,
                _caller_share.c.user_id == sa.bindparam("user_id"),
                _caller_share.c.pending.is_(False),
            ),
        )
    )
    .where(_tasks.c.id == sa.bindparam("task_id"))
)

OWNER = "owner"

# Runs in the transaction that deletes a task, before its row goes; what it returns (if
# anything) runs after the commit, e.g. removing the task's stored files.
DeleteHook = Callable[[AsyncConnection, uuid.UUID], Awaitable[Callable[[], Awaitable[None]] | None]]


class UnknownOwnerError(ValueError):
    """The new owner of a task is not an account."""


class Scope:
    """Whose tasks a query may touch: ``user_id``'s own and shared ones, or every task
    (``every_task``, for a role holding ADMIN)."""

    def __init__(self, user_id: uuid.UUID, *, every_task: bool = False) -> None:
        self.user_id = user_id
        self.every_task = every_task

    def where(self, *share_permissions: str) -> Any:
        """The SQL condition: owned by the user, or shared with it with one of
        ``share_permissions`` (with any share when none is named)."""
        if self.every_task:
            return sa.true()
        shared = sa.select(_shares.c.task_id).where(
            _shares.c.user_id == self.user_id, _shares.c.pending.is_(False)
        )
        if share_permissions:
            shared = shared.where(_shares.c.permission.in_(share_permissions))
        return sa.or_(_tasks.c.owner_id == self.user_id, _tasks.c.id.in_(shared))

    def owns(self) -> Any:
        """The SQL condition: owned by the user (every task for ``every_task``)."""
        return sa.true() if self.every_task else _tasks.c.owner_id == self.user_id


def _escape_like(text: str) -> str:
    """Escape LIKE wildcards so ``q`` matches literally (it is also a bound parameter)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _out(row: Any) -> TaskOut:
    return TaskOut.model_validate(row._mapping)


class TaskService:
    def __init__(self, engine: AsyncEngine, *, clock: Clock | None = None) -> None:
        self._engine = engine
        self._clock = clock or SystemClock()
        self._delete_hooks: list[DeleteHook] = []

    def on_delete(self, hook: DeleteHook) -> None:
        """Run ``hook(conn, task_id)`` whenever a task is deleted (see :data:`DeleteHook`)."""
        self._delete_hooks.append(hook)

    async def create(self, owner_id: uuid.UUID, data: TaskCreate) -> TaskOut:
        now = self._clock.now()
        # The models carry the description sanitized, and measured as stored (schemas).
        values = data.model_dump()
        values.update(id=uuid.uuid4(), owner_id=owner_id, created_at=now, updated_at=now)
        async with self._engine.begin() as conn:
            row = (await conn.execute(_tasks.insert().values(**values).returning(*_tasks.c))).one()
        return _out(row)

    async def find(
        self, task_id: uuid.UUID, user_id: uuid.UUID
    ) -> tuple[TaskOut, str | None] | None:
        """The task and ``user_id``'s relation to it (``owner``, a share's permission, or
        None), in one query; None when there is no such task."""
        async with self._engine.connect() as conn:
            row = (await conn.execute(_FIND, {"task_id": task_id, "user_id": user_id})).first()
        if row is None:
            return None
        relation = OWNER if row.owner_id == user_id else row.share_permission
        return _out(row), relation

    async def page(
        self,
        scope: Scope,
        *,
        status: str | None = None,
        q: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> tuple[list[TaskOut], str | None]:
        """A page of the tasks ``scope`` may see, newest first.

        Raises:
            InvalidCursorError: the cursor is not one this service made.
        """
        query = _tasks.select().where(scope.where())
        if status is not None:
            query = query.where(_tasks.c.status == status)
        if q:
            pattern = f"%{_escape_like(q)}%"
            query = query.where(
                sa.or_(
                    _tasks.c.title.ilike(pattern, escape="\\"),
                    _tasks.c.description.ilike(pattern, escape="\\"),
                )
            )
        if cursor:
            created_at, task_id = decode_cursor(cursor)
            query = query.where(
                sa.or_(
                    _tasks.c.created_at < created_at,
                    sa.and_(_tasks.c.created_at == created_at, _tasks.c.id < task_id),
                )
            )
        query = query.order_by(_tasks.c.created_at.desc(), _tasks.c.id.desc()).limit(limit + 1)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        items = [_out(row) for row in rows[:limit]]
        next_cursor = (
            encode_cursor(items[-1].created_at, items[-1].id) if len(rows) > limit else None
        )
        return items, next_cursor

    async def update(self, task_id: uuid.UUID, data: TaskUpdate, scope: Scope) -> TaskOut:
        """Change the fields sent. The guard has checked the caller may; the condition
        is repeated in the UPDATE so that a share revoked meanwhile is honoured.

        Raises:
            NotFoundError: the task is gone, or the caller's access with it.
            UnknownOwnerError: ``owner_id`` (admins only) names no account.
        """
        changes = data.model_dump(include=data.model_fields_set)
        changes["updated_at"] = self._clock.now()
        statement = (
            _tasks.update()
            .where(_tasks.c.id == task_id, scope.where("edit"))
            .values(**changes)
            .returning(*_tasks.c)
        )
        try:
            async with self._engine.begin() as conn:
                row = (await conn.execute(statement)).first()
        except IntegrityError as exc:
            raise UnknownOwnerError("no such account") from exc
        if row is None:
            raise NotFoundError("not found")
        return _out(row)

    async def delete(self, task_id: uuid.UUID, scope: Scope) -> None:
        """Delete the task (its shares go with it).

        Raises:
            NotFoundError: the task is gone, or the caller no longer owns it.
        """
        statement = _tasks.delete().where(_tasks.c.id == task_id, scope.owns())
        async with self._engine.begin() as conn:
            after_commit = [await hook(conn, task_id) for hook in self._delete_hooks]
            if (await conn.execute(statement)).rowcount != 1:
                raise NotFoundError("not found")
        for then in after_commit:
            if then is not None:
                await then()

    async def shares(self, task_id: uuid.UUID) -> list[ShareOut]:
        query = (
            sa.select(_shares.c.user_id, _shares.c.permission)
            .where(_shares.c.task_id == task_id)
            .order_by(_shares.c.created_at, _shares.c.user_id)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [ShareOut(user_id=row.user_id, permission=row.permission) for row in rows]

    async def activate_pending_shares(self, verified: EmailVerified) -> None:
        """An address is verified: the pending shares of its account now count."""
        user_id = verified.user_id
        async with self._engine.begin() as conn:
            await conn.execute(
                _shares.update()
                .where(_shares.c.user_id == user_id, _shares.c.pending.is_(True))
                .values(pending=False)
            )

    async def share(
        self,
        task_id: uuid.UUID,
        user_id: uuid.UUID,
        permission: str,
        *,
        by: uuid.UUID,
        pending: bool = False,
    ) -> ShareOut:
        """Share the task with ``user_id``, or change the permission of its share;
        ``pending`` for an id reserved for an address without account.

        Raises:
            NotFoundError: the task is gone.
        """
        values = {
            "task_id": task_id,
            "user_id": user_id,
            "permission": permission,
            "pending": pending,
            "created_by": by,
            "created_at": self._clock.now(),
        }
        async with self._engine.begin() as conn:
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            statement = dialect.insert(_shares).values(**values)
            statement = statement.on_conflict_do_update(
                index_elements=["task_id", "user_id"], set_={"permission": permission}
            )
            try:
                await conn.execute(statement)
            except IntegrityError as exc:  # the task was deleted meanwhile
                raise NotFoundError("not found") from exc
        return ShareOut(user_id=user_id, permission=permission)

    async def unshare(self, task_id: uuid.UUID, user_id: uuid.UUID) -> None:
        """Raise NotFoundError when the task is not shared with ``user_id``."""
        statement = _shares.delete().where(
            _shares.c.task_id == task_id, _shares.c.user_id == user_id
        )
        async with self._engine.begin() as conn:
            if (await conn.execute(statement)).rowcount != 1:
                raise NotFoundError("not found")
