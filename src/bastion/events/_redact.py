"""Redaction: no password, token, key or reset link ever reaches a log or a stored event.

Two nets (ASVS 16.2.5, OWASP Logging Cheat Sheet "Data to exclude"): by field name, for
structured extras, and by value pattern, for free text such as ``details``.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["REDACTED", "redact_mapping", "redact_text"]

REDACTED = "[REDACTED]"

_SECRET_NAMES = re.compile(
    r"pass(word|wd|phrase)?|secret|token|authorization|cookie|api[_-]?key|private|"
    r"credential|otp|code_verifier|session_id|reset|link",
    re.IGNORECASE,
)
_SECRET_VALUES = [
    re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"),  # JWT / JWS
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(?i)\b(password|token|secret)\s*[=:]\s*\S+"),
    re.compile(r"\$argon2(id|i|d)\$[^\s]+|\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}"),  # hashes
    re.compile(r"(?i)https?://\S*[?&](token|code|key)=\S+"),  # links carrying a secret
    re.compile(r"\b[A-Za-z0-9_-]{40,}\b"),  # long opaque strings: refresh and reset tokens
]


def redact_text(text: str) -> str:
    for pattern in _SECRET_VALUES:
        text = pattern.sub(REDACTED, text)
    return text


def redact_mapping(values: dict[str, Any]) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    for key, value in values.items():
        if _SECRET_NAMES.search(key):
            clean[key] = REDACTED
        elif isinstance(value, str):
            clean[key] = redact_text(value)
        elif isinstance(value, dict):
            clean[key] = redact_mapping(value)
        else:
            clean[key] = value
    return clean
