"""The task tables: tasks belong to accounts of the security core, by id."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from bastion.stores.sql import UTCDateTime

__all__ = ["AttachmentRow", "TaskRow", "TaskShareRow"]


class TaskRow(SQLModel, table=True):
    __tablename__ = "tasks"
    __table_args__ = (sa.Index("ix_tasks_owner_created", "owner_id", "created_at", "id"),)

    id: UUID = Field(primary_key=True)
    owner_id: UUID = Field(foreign_key="accounts.id", ondelete="CASCADE")
    title: str = Field(max_length=200)
    description: str = Field(default="", sa_type=sa.Text)
    status: str = Field(default="todo", max_length=16)
    priority: str = Field(default="medium", max_length=8)
    due_date: datetime | None = Field(default=None, sa_type=UTCDateTime)
    tags: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class TaskShareRow(SQLModel, table=True):
    """A task shared with one user, ``read`` or ``edit``.

    ``user_id`` is an account id, or the id reserved for an email that had no account
    when the task was shared (no foreign key). Such a share is ``pending``: it gives
    nothing until the address is proven to belong to the account that registers it
    (email verification), so that registering someone else's address first gains
    nothing.
    """

    __tablename__ = "task_shares"
    __table_args__ = (sa.Index("ix_task_shares_user_task", "user_id", "task_id"),)

    task_id: UUID = Field(foreign_key="tasks.id", primary_key=True, ondelete="CASCADE")
    user_id: UUID = Field(primary_key=True)
    permission: str = Field(max_length=8)
    pending: bool = False
    created_by: UUID
    created_at: datetime = Field(sa_type=UTCDateTime)


class AttachmentRow(SQLModel, table=True):
    """A file attached to a task: its sanitized display name, the type detected from
    its bytes, and the key of the stored object (generated, never a client's name).
    ``created_by`` is the uploader's account id (no foreign key, like a share's)."""

    __tablename__ = "task_attachments"
    __table_args__ = (sa.Index("ix_task_attachments_task_created", "task_id", "created_at", "id"),)

    id: UUID = Field(primary_key=True)
    task_id: UUID = Field(foreign_key="tasks.id", ondelete="CASCADE")
    filename: str = Field(max_length=255)
    content_type: str = Field(max_length=64)
    size: int = Field(sa_type=sa.BigInteger)
    storage_key: str = Field(max_length=64)
    created_by: UUID
    created_at: datetime = Field(sa_type=UTCDateTime)
