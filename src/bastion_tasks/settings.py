"""The task service's settings: the core's (:class:`bastion.config.BastionSettings`) and
the attachments', read from the same ``BASTION_`` variables (API.md fixes the names).

Only the task service reads the attachment settings, so the core never sees them: a
``BastionSettings`` ignores ``BASTION_ATTACHMENT_*``. Their checks live here too and run
when the service builds its settings (``create_app``, ``bastion serve``): a type that
cannot be detected safely, or a cap outside its bounds, refuses the start in every
environment, naming the setting. The production gate (:func:`bastion.config.check_settings`)
covers the core's settings and takes a ``TaskSettings`` as it is.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from bastion.config import BastionSettings, split_csv
from bastion.uploads import SUPPORTED_TYPES

__all__ = ["TaskSettings"]


class TaskSettings(BastionSettings):
    """Every setting of the task service: the core's and the attachments'."""

    # Task attachments (docs/attachments.md): the cap on one file, and the types allowed,
    # as detected from the content (comma-separated media types).
    attachment_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1, le=1024**3)
    attachment_types: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(SUPPORTED_TYPES)
    )
    # The most bytes of attachments the tasks of one account may hold, whoever uploaded
    # them (the task's owner is charged): past it an upload is 507 (docs/attachments.md).
    attachment_quota_bytes: int = Field(default=100 * 1024 * 1024, ge=1, le=1024**4)

    @field_validator("attachment_types", mode="before")
    @classmethod
    def _types_csv(cls, value: object) -> object:
        return split_csv(value)

    @field_validator("attachment_types")
    @classmethod
    def _upload_types(cls, value: list[str]) -> list[str]:
        types = [item.lower() for item in value]
        unknown = sorted(set(types) - set(SUPPORTED_TYPES))
        if unknown or not types:
            raise ValueError(f"unsupported {unknown}; a non-empty list of {list(SUPPORTED_TYPES)}")
        return types
