"""Request and response models of the auth and user routes.

Input models forbid unknown fields (mass assignment, OWASP API3:2023) and use strict
string types (no coercion); responses are explicit models that never carry a hash,
secret or internal flag.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    WithJsonSchema,
)

__all__ = [
    "AcceptedOut",
    "AdminUserList",
    "AdminUserOut",
    "AdminUserPatch",
    "CSRFOut",
    "CookieSessionOut",
    "DecisionOut",
    "EmailIn",
    "LinkTokenIn",
    "LoginIn",
    "LogoutIn",
    "MFACodeIn",
    "MFADisableIn",
    "MFARequiredOut",
    "MFAVerifyIn",
    "PasswordChangeIn",
    "PasswordResetIn",
    "RFC3339Time",
    "ReauthenticateIn",
    "RecoveryCodesOut",
    "RefreshIn",
    "RegisterIn",
    "RegisteredOut",
    "SafeText",
    "SessionOut",
    "TOTPSetupOut",
    "TokenPairOut",
    "UserOut",
    "UserPatch",
    "safe_text",
]


# Refused anywhere, the ends included, so that nothing is dropped unseen: controls (Cc:
# NUL, ESC, tab, newline, NEL), format characters (Cf: bidi overrides and isolates, the
# Trojan Source trick, CVE-2021-42574; zero-width space, BOM, soft hyphen), lone
# surrogates (Cs: not encodable as UTF-8, so not storable) and line and paragraph
# separators (Zl, Zp): one-line text shows what it stores.
_REFUSED = {"Cc", "Cf", "Cs", "Zl", "Zp"}
# ZWNJ and ZWJ join what stands on both sides (Persian and Indic words, emoji sequences
# such as 👩\u200d💻); RFC 8264 §9.8 allows them in context, here between two characters.
_JOINERS = {"\u200c", "\u200d"}


def _joins(value: str, index: int) -> bool:
    if value[index] not in _JOINERS or index == 0 or index == len(value) - 1:
        return False
    neighbours = (value[index - 1], value[index + 1])
    return not any(ch.isspace() or ch in _JOINERS for ch in neighbours)


def safe_text(value: str) -> str:
    """NFC, no control, format or separator character (a joiner only between two
    characters), trimmed of spaces, not empty (OWASP Input Validation Cheat Sheet:
    canonicalize, then validate against an allowlist of character classes)."""
    value = unicodedata.normalize("NFC", value)
    for index, ch in enumerate(value):
        if unicodedata.category(ch) in _REFUSED and not _joins(value, index):
            raise ValueError("control and format characters are not allowed")
    value = value.strip()
    if not value:
        raise ValueError("must not be blank")
    return value


SafeText = Annotated[StrictStr, AfterValidator(safe_text)]

# RFC 3339 §5.6 date-time (seconds may be left out, as ISO 8601 allows): a full date, a
# time and a zone (API.md: times are RFC 3339 / ISO 8601).
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}:\d{2})"
)


def _rfc3339(value: object) -> object:
    """Only an RFC 3339 string (or a datetime, from Python callers): the framework would
    otherwise read ``1700000000`` or ``"1700000000"`` as Unix time, a number the client
    may not have meant as a date (no coercion, as for every other field)."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError("must be an RFC 3339 date-time with a time zone")
    return value


def _utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-14:00 is past datetime.max in UTC
        raise ValueError("date out of range") from None


# A point in time from a client: RFC 3339 with a zone, kept in UTC.
RFC3339Time = Annotated[
    AwareDatetime,
    BeforeValidator(_rfc3339),
    AfterValidator(_utc),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
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


# A TOTP code (6 digits) or a recovery code (12 characters, dashes and spaces allowed).
MFACode = Annotated[StrictStr, Field(min_length=1, max_length=32)]


class MFAVerifyIn(_In):
    mfa_token: Annotated[StrictStr, Field(min_length=1, max_length=2048)]
    code: MFACode


class MFACodeIn(_In):
    code: MFACode


class ReauthenticateIn(_In):
    password: Password
    code: MFACode | None = None


class MFADisableIn(_In):
    password: Password
    code: MFACode


class MFARequiredOut(BaseModel):
    """The first step of a sign-in passed; send ``mfa_token`` and a code to
    ``POST /auth/mfa/verify`` within five minutes."""

    mfa_required: Literal[True] = True
    mfa_token: str


class TOTPSetupOut(BaseModel):
    """Shown once: enrol it in an authenticator app, then confirm with a code."""

    secret: str
    otpauth_uri: str
    qr_svg: str


class RecoveryCodesOut(BaseModel):
    """Shown once: each code signs in once in place of a TOTP code."""

    recovery_codes: list[str]


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


class CookieSessionOut(BaseModel):
    """A login or refresh in cookie mode: the tokens went into ``HttpOnly`` cookies, and
    the new CSRF token (also in its cookie) goes into ``X-CSRF-Token`` from now on."""

    token_type: Literal["cookie"] = "cookie"  # noqa: S105  (a token type, not a secret)
    csrf_token: str
    expires_in: int
    refresh_expires_in: int


class CSRFOut(BaseModel):
    csrf_token: str


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
