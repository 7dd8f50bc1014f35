"""Request and response models of the auth and user routes.

Input models forbid unknown fields (mass assignment, OWASP API3:2023) and use strict
string types (no coercion); responses are explicit models that never carry a hash,
secret or internal flag.
"""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictStr

__all__ = [
    "AcceptedOut",
    "AdminUserList",
    "AdminUserOut",
    "AdminUserPatch",
    "DecisionOut",
    "EmailIn",
    "LinkTokenIn",
    "LoginIn",
    "LogoutIn",
    "PasswordChangeIn",
    "PasswordResetIn",
    "RefreshIn",
    "RegisterIn",
    "RegisteredOut",
    "SafeText",
    "SessionOut",
    "TokenPairOut",
    "UserOut",
    "UserPatch",
    "safe_text",
]


def safe_text(value: str) -> str:
    """NFC, no control or format characters (bidi overrides, NUL), trimmed, not empty."""
    value = unicodedata.normalize("NFC", value).strip()
    if any(unicodedata.category(ch) in {"Cc", "Cf"} for ch in value):
        raise ValueError("control characters are not allowed")
    if not value:
        raise ValueError("must not be blank")
    return value


SafeText = Annotated[StrictStr, AfterValidator(safe_text)]
Email = Annotated[StrictStr, Field(min_length=3, max_length=320)]
# Long enough for the policy to explain a refusal; the policy caps passwords at 1024 bytes.
Password = Annotated[StrictStr, Field(min_length=1, max_length=4096)]
OpaqueToken = Annotated[StrictStr, Field(min_length=1, max_length=256)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegisterIn(_In):
    email: Email
    password: Password
    display_name: Annotated[SafeText, Field(max_length=100)] | None = None


class RegisteredOut(BaseModel):
    status: str = "accepted"
    detail: str = "If the address can be registered, a confirmation link is on its way to it."


class AcceptedOut(BaseModel):
    status: str = "accepted"
    detail: str = "If the address has an account, a link is on its way to it."


class EmailIn(_In):
    email: Email


# A one-time link's token: ``<selector>.<verifier>``, URL-safe base64 halves.
LinkToken = Annotated[StrictStr, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")]


class LinkTokenIn(_In):
    token: LinkToken


class PasswordResetIn(_In):
    token: LinkToken
    new_password: Password


class PasswordChangeIn(_In):
    current_password: Password
    new_password: Password


class SessionOut(BaseModel):
    id: UUID
    created_at: datetime
    last_used_at: datetime
    ip_address: str | None
    user_agent: str | None
    current: bool


# A solved ALTCHA challenge: base64 of a small JSON object.
Solution = Annotated[StrictStr, Field(max_length=4096, pattern=r"^[A-Za-z0-9+/=]*$")]


class LoginIn(_In):
    email: Email
    password: Password
    altcha: Solution | None = Field(
        default=None,
        description="The solved proof-of-work challenge, when a failed login asked for one.",
    )


class RefreshIn(_In):
    refresh_token: OpaqueToken


class LogoutIn(_In):
    refresh_token: OpaqueToken | None = None


class TokenPairOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)  # built from a TokenPair

    access_token: str
    token_type: str = "bearer"  # noqa: S105  (a token type, not a secret)
    expires_in: int
    refresh_token: str
    refresh_expires_in: int


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)  # built from a stored Account

    id: UUID
    email: str
    display_name: str | None
    role: str
    email_verified: bool
    mfa_enabled: bool
    created_at: datetime


class UserPatch(_In):
    display_name: Annotated[SafeText, Field(max_length=100)] | None


Role = Literal["viewer", "member", "admin"]


class AdminUserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)  # built from a stored Account

    id: UUID
    email: str
    display_name: str | None
    role: str
    is_active: bool
    email_verified: bool
    mfa_enabled: bool
    locked_at: datetime | None = None
    created_at: datetime
    updated_at: datetime


class AdminUserList(BaseModel):
    items: list[AdminUserOut]
    next_cursor: str | None


class AdminUserPatch(_In):
    """Only the role and the active flag; nothing else about an account is set here."""

    role: Role | None = None
    is_active: StrictBool | None = None


class DecisionOut(BaseModel):
    """The guard's decision (API.md, "Decision")."""

    status: Literal["allow", "deny"]
    reason: str
    user_id: str | None
    role: str | None
    permissions_checked: list[str]
    rate_limit_remaining: int | None
    warnings: list[str]
