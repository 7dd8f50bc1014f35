"""Task input and output models: one input model per operation, explicit output."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictStr,
    model_validator,
)
from pydantic_core import PydanticCustomError

from bastion.fastapi import RFC3339Time, SafeText
from bastion.html import sanitize_html

__all__ = [
    "DESCRIPTION_MAX_CHARS",
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
DESCRIPTION_MAX_CHARS = 10_000


def _sanitized_description(value: str) -> str:
    """The description as it is stored and returned: sanitized HTML (docs/rich-text.md),
    itself within the limit. Sanitizing can lengthen text (``<`` is stored as ``&lt;``,
    four characters), so the limit is checked again on what is kept: a limit promises
    what is stored and served, not only what was sent (OWASP Input Validation Cheat
    Sheet: canonicalize, then validate)."""
    cleaned = sanitize_html(value)
    if len(cleaned) > DESCRIPTION_MAX_CHARS:
        raise PydanticCustomError(
            "string_too_long",
            "String should have at most {max_length} characters once sanitized "
            "(markup that is not kept is escaped: < is stored as &lt;)",
            {"max_length": DESCRIPTION_MAX_CHARS},
        )
    return cleaned


# Checked as sent (which bounds the sanitizer's work), then sanitized and checked as stored.
Description = Annotated[
    StrictStr,
    Field(max_length=DESCRIPTION_MAX_CHARS),
    AfterValidator(_sanitized_description),
]


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
