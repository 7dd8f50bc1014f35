"""Email addresses: one spelling to store, one key for uniqueness."""

from __future__ import annotations

import unicodedata

from email_validator import EmailNotValidError, validate_email

__all__ = ["InvalidEmailError", "normalize_email"]


class InvalidEmailError(ValueError):
    pass


def normalize_email(raw: str) -> tuple[str, str]:
    """Return ``(email, key)``: NFKC, the domain lower-cased (IDNA), the key case-folded.

    The local part keeps its case for display and sending (RFC 5321 §2.4 lets a server
    treat it as case-sensitive), but uniqueness is case-insensitive through ``key`` so
    ``Alice@x.org`` and ``alice@X.ORG`` are one account.

    Raises:
        InvalidEmailError: the address is not a syntactically valid email address.
    """
    text = unicodedata.normalize("NFKC", raw.strip())
    try:
        result = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidEmailError(str(exc)) from exc
    email = unicodedata.normalize("NFKC", result.normalized)
    local, _, domain = email.rpartition("@")
    email = f"{local}@{domain.lower()}"
    return email, email.casefold()
