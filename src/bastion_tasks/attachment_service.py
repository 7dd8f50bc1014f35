"""Files attached to tasks: their rows in ``task_attachments`` and their stored bytes.

The bytes go to an :class:`~bastion.uploads.AttachmentStorage` under generated keys;
the row keeps the key, the sanitized display name and the detected type. A row is
written only after its object is committed, and an object whose row cannot be written
is removed, so a row always has its file. Deleting a row (or the task, through
:meth:`AttachmentService.on_task_delete`) removes the file after the commit.

At most :data:`MAX_ATTACHMENTS_PER_TASK` files per task (OWASP API4:2023: a task is no
unbounded store): checked before the body is read, and again in the statement that
inserts the row, so racing uploads cannot pass it.

At most ``quota_bytes`` (``BASTION_ATTACHMENT_QUOTA_BYTES``) of files on the tasks of one
account: the task's owner is charged, whoever uploads (an edit share, an admin). The
files are the owner's to keep or delete, and the owner chose who may add to them; so
what one account's tasks hold is bounded, however many people write to them, and an
uploader cannot park files outside any account's quota. The space left is checked
before the body is read and on every chunk (the upload stops where it passes), and
again in the statement that inserts the row, under a lock of the owner (on PostgreSQL a
transaction-scoped advisory lock; SQLite has one writer), so racing uploads cannot
pass the quota together: the stored total never exceeds it.
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
from bastion.errors import NotFoundError
from bastion.uploads import (
    AttachmentStorage,
    InsufficientStorageError,
    LocalAttachmentStorage,
    ReceivedFile,
    UploadPolicy,
    receive_file,
)
from bastion_tasks.models import AttachmentRow, TaskRow
from bastion_tasks.settings import TaskSettings

__all__ = [
    "DEFAULT_QUOTA_BYTES",
    "MAX_ATTACHMENTS_PER_TASK",
    "AttachmentOut",
    "AttachmentService",
    "StoredAttachment",
    "TooManyAttachmentsError",
    "attachment_service",
    "upload_policy",
]

MAX_ATTACHMENTS_PER_TASK = 20
DEFAULT_QUOTA_BYTES = 100 * 1024 * 1024
# The key space of the PostgreSQL advisory locks that serialize one owner's uploads
# (the two-integer form, apart from the one-bigint locks of the core); the second key
# is taken from the owner's id, and two owners sharing one only wait for each other.
_QUOTA_LOCK = int.from_bytes(b"bqta", "big")

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


def _owner_usage(owner: Any) -> Any:
    """The bytes attached to the tasks of ``owner`` (a SQL expression)."""
    return (
        sa.select(sa.func.coalesce(sa.func.sum(_attachments.c.size), 0))
        .select_from(_attachments.join(_tasks, _attachments.c.task_id == _tasks.c.id))
        .where(_tasks.c.owner_id == owner)
        .scalar_subquery()
    )


def _owner_of(task_id: uuid.UUID) -> Any:
    return sa.select(_tasks.c.owner_id).where(_tasks.c.id == task_id).scalar_subquery()


async def _lock_owner(conn: AsyncConnection, task_id: uuid.UUID) -> None:
    """On PostgreSQL, lock the task's row (as :func:`_lock_task`) and then its owner's
    uploads: the sum of the owner's files read by the insert that follows is then the
    one it adds to. Every upload takes the row first and the owner second, and nothing
    takes them the other way round, so they cannot deadlock. SQLite needs nothing (its
    insert takes the single write lock before it reads)."""
    if conn.dialect.name != "postgresql":
        return
    owner = await conn.scalar(
        sa.select(_tasks.c.owner_id).where(_tasks.c.id == task_id).with_for_update()
    )
    if owner is not None:
        key = int.from_bytes(owner.bytes[:4], "big", signed=True)
        await conn.execute(
            sa.select(
                sa.func.pg_advisory_xact_lock(
                    sa.literal(_QUOTA_LOCK, sa.Integer), sa.literal(key, sa.Integer)
                )
            )
        )


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
        quota_bytes: int = DEFAULT_QUOTA_BYTES,
        clock: Clock | None = None,
    ) -> None:
        self._engine = engine
        self.storage = storage
        self.policy = policy or UploadPolicy()
        self.max_per_task = max_per_task
        self.quota_bytes = quota_bytes
        self._clock = clock or SystemClock()

    async def count(self, task_id: uuid.UUID) -> int:
        query = sa.select(sa.func.count()).where(_attachments.c.task_id == task_id)
        async with self._engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    def _over_quota(self) -> InsufficientStorageError:
        return InsufficientStorageError(
            f"The task's owner has used the attachment storage quota of {self.quota_bytes} "
            "bytes; delete attachments to make room."
        )

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
            InsufficientStorageError: the file would take the task's owner past the quota.
            NotFoundError: the task was deleted meanwhile.
            UploadError: (and its subclasses) the upload is refused; nothing is kept.
        """
        count = sa.select(sa.func.count()).where(_attachments.c.task_id == task_id)
        query = sa.select(count.scalar_subquery(), _owner_usage(_owner_of(task_id)))
        async with self._engine.connect() as conn:
            attached, used = (await conn.execute(query)).one()
        if attached >= self.max_per_task:
            raise TooManyAttachmentsError(f"a task has at most {self.max_per_task} attachments")
        space = self.quota_bytes - int(used or 0)
        if space <= 0:
            raise self._over_quota()
        received = await receive_file(chunks, content_type, self.storage, self.policy, space=space)
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
        fits = _owner_usage(_owner_of(task_id)) + received.size <= self.quota_bytes
        source = sa.select(
            *[
                sa.literal(value, _attachments.c[name].type).label(name)
                for name, value in values.items()
            ]
        ).where(task_exists, count < self.max_per_task, fits)
        statement = _attachments.insert().from_select(list(values), source).returning(*_PUBLIC)
        async with self._engine.begin() as conn:
            await _lock_owner(conn, task_id)
            row = (await conn.execute(statement)).first()
            if row is None:
                if not await conn.scalar(sa.select(task_exists)):
                    raise NotFoundError("not found")
                if (await conn.execute(sa.select(count))).scalar_one() >= self.max_per_task:
                    raise TooManyAttachmentsError(
                        f"a task has at most {self.max_per_task} attachments"
                    )
                raise self._over_quota()
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


def upload_policy(settings: TaskSettings) -> UploadPolicy:
    """What an attachment may be: ``BASTION_ATTACHMENT_MAX_BYTES`` and ``_TYPES``."""
    return UploadPolicy(
        max_bytes=settings.attachment_max_bytes, types=frozenset(settings.attachment_types)
    )


def attachment_service(
    settings: TaskSettings, engine: AsyncEngine, *, clock: Clock | None = None
) -> AttachmentService:
    """The service as ``settings`` describe it: files in ``$BASTION_DATA_DIR/attachments``,
    ``BASTION_ATTACHMENT_MAX_BYTES``, ``BASTION_ATTACHMENT_TYPES`` and
    ``BASTION_ATTACHMENT_QUOTA_BYTES``."""
    policy = upload_policy(settings)
    storage = LocalAttachmentStorage(settings.data_dir / "attachments")
    return AttachmentService(
        engine,
        storage,
        policy=policy,
        quota_bytes=settings.attachment_quota_bytes,
        clock=clock,
    )
