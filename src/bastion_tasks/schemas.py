"""Task input and output models: one input model per operation, explicit output."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictStr,
    model_validator,
)

from bastion.fastapi import RFC3339Time, SafeText

__all__ = [
    "ShareIn",
    "ShareOut",
    "TaskAdminUpdate",
    "TaskCreate",
    "TaskList",
    "TaskOut",
    "TaskUpdate",
]

Status = Literal["todo", "in_progress", "done"]
Priority = Literal["low", "medium", "high"]
Title = Annotated[SafeText, Field(min_length=1, max_length=200)]
Tag = Annotated[SafeText, Field(min_length=1, max_length=32)]
Description = Annotated[StrictStr, Field(max_length=10_000)]


DueDate = RFC3339Time


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TaskCreate(_In):
    title: Title
    description: Description = ""
    status: Status = "todo"
    priority: Priority = "medium"
    due_date: DueDate | None = None
    tags: Annotated[list[Tag], Field(max_length=20)] = Field(default_factory=list)


class TaskUpdate(_In):
    """Only the fields sent are changed; ``id``, ``owner_id`` and timestamps are refused."""

    title: Title | None = None
    description: Description | None = None
    status: Status | None = None
    priority: Priority | None = None
    due_date: DueDate | None = None
    tags: Annotated[list[Tag], Field(max_length=20)] | None = None

    @model_validator(mode="after")
    def _no_null_for_required(self) -> Any:
        for name in self.model_fields_set - {"due_date"}:
            if getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class TaskAdminUpdate(TaskUpdate):
    """An admin's change may also hand the task to another account."""

    owner_id: UUID | None = Field(default=None, description="admins only")


class TaskOut(BaseModel):
    id: UUID
    owner_id: UUID
    title: str
    description: str
    status: Status
    priority: Priority
    due_date: datetime | None
    tags: list[str]
    created_at: datetime
    updated_at: datetime


class TaskList(BaseModel):
    items: list[TaskOut]
    next_cursor: str | None


class ShareIn(_In):
    email: Annotated[StrictStr, Field(min_length=3, max_length=320)]
    permission: Literal["read", "edit"]


class ShareOut(BaseModel):
    user_id: UUID
    permission: Literal["read", "edit"]
