"""Reading a JWT's parts before its signature is checked, and its claims after."""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any

from bastion.errors import InvalidTokenError

__all__ = [
    "MAX_TOKEN_LENGTH",
    "header",
    "media_type",
    "number_claim",
    "optional_text",
    "peek_issuer",
    "segment",
    "text_claim",
]

MAX_TOKEN_LENGTH = 16 * 1024  # external tokens carry more claims than Bastion's own


def segment(token: str, index: int) -> dict[str, Any]:
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
        raise InvalidTokenError("malformed token")
    part = token.split(".")[index]
    try:
        value = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (ValueError, binascii.Error, RecursionError):
        raise InvalidTokenError("malformed token") from None
    if not isinstance(value, dict):
        raise InvalidTokenError("malformed token")
    return value


def header(token: str) -> dict[str, Any]:
    return segment(token, 0)


def peek_issuer(token: str) -> str | None:
    try:
        issuer = segment(token, 1).get("iss")
    except InvalidTokenError:
        return None
    return issuer if isinstance(issuer, str) else None


def text_claim(payload: dict[str, Any], name: str) -> str:
    """A non-empty string claim of printable characters: no control character, no lone
    surrogate (valid JSON, no UTF-8), nothing a column, a log line or a hash refuses."""
    value = payload.get(name)
    if not isinstance(value, str) or not value or not value.isprintable():
        raise InvalidTokenError("invalid claim")
    return value


def optional_text(payload: dict[str, Any], name: str, *, limit: int) -> str | None:
    """A string claim kept only when it is printable and at most ``limit`` characters
    (an informative claim, such as ``email``: a malformed one is dropped, not refused)."""
    value = payload.get(name)
    if isinstance(value, str) and value and len(value) <= limit and value.isprintable():
        return value
    return None


def number_claim(payload: dict[str, Any], name: str) -> int:
    """A NumericDate (RFC 7519 §2): an integer or a finite float (Python's parser reads
    ``Infinity`` and ``NaN``, which are no numbers of JSON's), rounded down."""
    value = payload.get(name)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise InvalidTokenError("invalid claim")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidTokenError("invalid claim")
    return math.floor(value)


def media_type(value: str) -> str:
    """A ``typ`` header's media type, without parameters, in lower case."""
    return value.split(";", 1)[0].strip().lower()
