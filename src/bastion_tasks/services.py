"""Task storage and queries. Every query is scoped to the caller in SQL, never after."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bastion.clock import Clock, SystemClock
from bastion.errors import NotFoundError
from bastion.html import sanitize_html
from bastion_tasks.models import TaskRow
from bastion_tasks.schemas import TaskCreate, TaskOut, TaskUpdate

__all__ = ["InvalidCursorError", "TaskService"]

_tasks = TaskRow.__table__  # type: ignore[attr-defined]


class InvalidCursorError(ValueError):
    pass


def _escape_like(text: str) -> str:
    """Escape LIKE wildcards so ``q`` matches literally (it is also a bound parameter)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def encode_cursor(created_at: datetime, task_id: uuid.UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(task_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, task_id = json.loads(raw)
        moment = datetime.fromisoformat(created)
        if moment.tzinfo is None:
            raise ValueError("naive")
        return moment, uuid.UUID(task_id)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidCursorError("invalid cursor") from exc


def _out(row: Any) -> TaskOut:
    return TaskOut.model_validate(row._mapping)


class TaskService:
    def __init__(self, engine: AsyncEngine, *, clock: Clock | None = None) -> None:
        self._engine = engine
        self._clock = clock or SystemClock()

    async def create(self, owner_id: uuid.UUID, data: TaskCreate) -> TaskOut:
        now = self._clock.now()
        values = data.model_dump()
        values["description"] = sanitize_html(values["description"])
        values.update(id=uuid.uuid4(), owner_id=owner_id, created_at=now, updated_at=now)
        async with self._engine.begin() as conn:
            row = (await conn.execute(_tasks.insert().values(**values).returning(*_tasks.c))).one()
        return _out(row)

    async def get(self, owner_id: uuid.UUID, task_id: uuid.UUID) -> TaskOut:
        """Raise NotFoundError for a missing task and for another user's task alike."""
        query = _tasks.select().where(_tasks.c.id == task_id, _tasks.c.owner_id == owner_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            raise NotFoundError("task not found")
        return _out(row)

    async def list(
        self,
        owner_id: uuid.UUID,
        *,
        status: str | None = None,
        q: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> tuple[list[TaskOut], str | None]:
        query = _tasks.select().where(_tasks.c.owner_id == owner_id)
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

    async def update(self, owner_id: uuid.UUID, task_id: uuid.UUID, data: TaskUpdate) -> TaskOut:
        changes = data.model_dump(include=data.model_fields_set)
        if "description" in changes:
            changes["description"] = sanitize_html(changes["description"])
        changes["updated_at"] = self._clock.now()
        statement = (
            _tasks.update()
            .where(_tasks.c.id == task_id, _tasks.c.owner_id == owner_id)
            .values(**changes)
            .returning(*_tasks.c)
        )
        async with self._engine.begin() as conn:
            row = (await conn.execute(statement)).first()
        if row is None:
            raise NotFoundError("task not found")
        return _out(row)

    async def delete(self, owner_id: uuid.UUID, task_id: uuid.UUID) -> None:
        statement = _tasks.delete().where(_tasks.c.id == task_id, _tasks.c.owner_id == owner_id)
        async with self._engine.begin() as conn:
            if (await conn.execute(statement)).rowcount != 1:
                raise NotFoundError("task not found")
