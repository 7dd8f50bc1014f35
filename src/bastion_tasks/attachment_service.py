"""Files attached to tasks: their rows in ``task_attachments`` and their stored bytes.

The bytes go to an :class:`~bastion.uploads.AttachmentStorage` under generated keys;
the row keeps the key, the sanitized display name and the detected type. A row is
written only after its object is committed, and an object whose row cannot be written
is removed, so a row always has its file. Deleting a row (or the task, through
:meth:`AttachmentService.on_task_delete`) removes the file after the commit.

At most :data:`MAX_ATTACHMENTS_PER_TASK` files per task (OWASP API4:2023: a task is no
unbounded store): checked before the body is read, and again in the statement that
inserts the row, so racing uploads cannot pass it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bastion.clock import Clock, SystemClock
from bastion.config import Settings
from bastion.errors import NotFoundError
from bastion.uploads import (
    AttachmentStorage,
    LocalAttachmentStorage,
    ReceivedFile,
    UploadPolicy,
    receive_file,
)
from bastion_tasks.models import AttachmentRow, TaskRow

__all__ = [
    "MAX_ATTACHMENTS_PER_TASK",
    "AttachmentOut",
    "AttachmentService",
    "StoredAttachment",
    "TooManyAttachmentsError",
    "attachment_service",
]

MAX_ATTACHMENTS_PER_TASK = 20

_attachments = AttachmentRow.__table__  # type: ignore[attr-defined]
_tasks = TaskRow.__table__  # type: ignore[attr-defined]
_logger = logging.getLogger("bastion_tasks.attachments")


class AttachmentOut(BaseModel):
    id: uuid.UUID
    filename: str
    content_type: str
    size: int
    created_at: datetime


@dataclass(frozen=True)
class StoredAttachment:
    """An attachment and the key of its stored bytes (never shown to clients)."""

    attachment: AttachmentOut
    storage_key: str


class TooManyAttachmentsError(ValueError):
    """The task has :data:`MAX_ATTACHMENTS_PER_TASK` attachments already."""


def _out(row: Any) -> AttachmentOut:
    return AttachmentOut.model_validate(row._mapping)


_PUBLIC = [_attachments.c[name] for name in AttachmentOut.model_fields]


async def _lock_task(conn: AsyncConnection, task_id: uuid.UUID) -> None:
    """On PostgreSQL, lock the task's row, so that uploads to a task and its deletion
    run one after the other. SQLite needs nothing: it has one writer at a time, and the
    statements that follow take the write lock as their transaction's first step."""
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.select(_tasks.c.id).where(_tasks.c.id == task_id).with_for_update())


class AttachmentService:
    def __init__(
        self,
        engine: AsyncEngine,
        storage: AttachmentStorage,
        *,
        policy: UploadPolicy | None = None,
        max_per_task: int = MAX_ATTACHMENTS_PER_TASK,
        clock: Clock | None = None,
    ) -> None:
        self._engine = engine
        self.storage = storage
        self.policy = policy or UploadPolicy()
        self.max_per_task = max_per_task
        self._clock = clock or SystemClock()

    async def count(self, task_id: uuid.UUID) -> int:
        query = sa.select(sa.func.count()).where(_attachments.c.task_id == task_id)
        async with self._engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def receive(
        self,
        task_id: uuid.UUID,
        by: uuid.UUID,
        chunks: AsyncIterable[bytes],
        content_type: str | None,
    ) -> AttachmentOut:
        """Store the file of a multipart body (``chunks``) and attach it to the task.

        Raises:
            TooManyAttachmentsError: the task has as many attachments as it may.
            NotFoundError: the task was deleted meanwhile.
            UploadError: (and its subclasses) the upload is refused; nothing is kept.
        """
        if await self.count(task_id) >= self.max_per_task:
            raise TooManyAttachmentsError(f"a task has at most {self.max_per_task} attachments")
        received = await receive_file(chunks, content_type, self.storage, self.policy)
        try:
            return await self._insert(task_id, received, by)
        except BaseException:
            await asyncio.shield(self.storage.delete(received.key))
            raise

    async def _insert(
        self, task_id: uuid.UUID, received: ReceivedFile, by: uuid.UUID
    ) -> AttachmentOut:
        values = {
            "id": uuid.uuid4(),
            "task_id": task_id,
            "filename": received.filename,
            "content_type": received.content_type,
            "size": received.size,
            "storage_key": received.key,
            "created_by": by,
            "created_at": self._clock.now(),
        }
        count = (
            sa.select(sa.func.count()).where(_attachments.c.task_id == task_id).scalar_subquery()
        )
        task_exists = sa.exists().where(_tasks.c.id == task_id)
        source = sa.select(
            *[
                sa.literal(value, _attachments.c[name].type).label(name)
                for name, value in values.items()
            ]
        ).where(task_exists, count < self.max_per_task)
        statement = _attachments.insert().from_select(list(values), source).returning(*_PUBLIC)
        async with self._engine.begin() as conn:
            await _lock_task(conn, task_id)
            row = (await conn.execute(statement)).first()
            if row is None:
                if await conn.scalar(sa.select(task_exists)):
                    raise TooManyAttachmentsError(
                        f"a task has at most {self.max_per_task} attachments"
                    )
                raise NotFoundError("not found")
        return _out(row)

    async def for_task(self, task_id: uuid.UUID) -> list[AttachmentOut]:
        """The task's attachments, oldest first."""
        query = (
            sa.select(*_PUBLIC)
            .where(_attachments.c.task_id == task_id)
            .order_by(_attachments.c.created_at, _attachments.c.id)
        )
        async with self._engine.connect() as conn:
            return [_out(row) for row in await conn.execute(query)]

    async def find(self, task_id: uuid.UUID, attachment_id: uuid.UUID) -> StoredAttachment:
        """The attachment ``attachment_id`` of the task ``task_id``.

        Raises:
            NotFoundError: no such attachment on this task.
        """
        query = sa.select(*_PUBLIC, _attachments.c.storage_key).where(
            _attachments.c.id == attachment_id, _attachments.c.task_id == task_id
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            raise NotFoundError("not found")
        return StoredAttachment(_out(row), row.storage_key)

    async def open(self, stored: StoredAttachment) -> AsyncIterator[bytes]:
        """The stored bytes, as a stream of chunks.

        Raises:
            NotFoundError: the row has lost its file (logged: that is our fault).
        """
        try:
            return await self.storage.read(stored.storage_key)
        except NotFoundError:
            _logger.error("attachment %s has no stored file", stored.attachment.id)
            raise

    async def remove(self, task_id: uuid.UUID, attachment_id: uuid.UUID) -> None:
        """Delete the attachment's row, then its file.

        Raises:
            NotFoundError: no such attachment on this task.
        """
        statement = (
            _attachments.delete()
            .where(_attachments.c.id == attachment_id, _attachments.c.task_id == task_id)
            .returning(_attachments.c.storage_key)
        )
        async with self._engine.begin() as conn:
            key = (await conn.execute(statement)).scalar_one_or_none()
        if key is None:
            raise NotFoundError("not found")
        await self._delete_files([key])

    async def on_task_delete(
        self, conn: AsyncConnection, task_id: uuid.UUID
    ) -> Callable[[], Awaitable[None]] | None:
        """A :data:`~bastion_tasks.services.DeleteHook`: take the task's rows in its
        deletion's transaction, and remove their files once that commits."""
        await _lock_task(conn, task_id)
        statement = (
            _attachments.delete()
            .where(_attachments.c.task_id == task_id)
            .returning(_attachments.c.storage_key)
        )
        keys = list((await conn.execute(statement)).scalars())
        if not keys:
            return None

        async def remove_files() -> None:
            await self._delete_files(keys)

        return remove_files

    async def _delete_files(self, keys: list[str]) -> None:
        for key in keys:
            try:
                await asyncio.shield(self.storage.delete(key))
            except OSError:
                # The row is gone; a file left behind is an orphan to sweep, not an error
                # to show the client whose delete succeeded.
                _logger.exception("could not remove a stored attachment file")


def attachment_service(
    settings: Settings, engine: AsyncEngine, *, clock: Clock | None = None
) -> AttachmentService:
    """The service as ``settings`` describe it: files in ``$BASTION_DATA_DIR/attachments``,
    ``BASTION_ATTACHMENT_MAX_BYTES`` and ``BASTION_ATTACHMENT_TYPES``."""
    policy = UploadPolicy(
        max_bytes=settings.attachment_max_bytes, types=frozenset(settings.attachment_types)
    )
    storage = LocalAttachmentStorage(settings.data_dir / "attachments")
    return AttachmentService(engine, storage, policy=policy, clock=clock)
