"""Email addresses: one spelling to store, one key for uniqueness."""

from __future__ import annotations

import unicodedata

from email_validator import EmailNotValidError, validate_email

from bastion.errors import BastionError

__all__ = ["InvalidEmailError", "normalize_email"]


class InvalidEmailError(BastionError, ValueError):
    pass


_LOCAL_PART_MAX_OCTETS = 64
# The stored columns (``email``, ``email_key``) hold 320 characters. Case folding can
# lengthen an address (``ß`` folds to ``ss``, ``ΐ`` to three code points), so a new
# address is measured as it is stored, not as it was sent.
_STORED_MAX_CHARS = 320


def normalize_email(raw: str, *, new: bool = False) -> tuple[str, str]:
    """Return ``(email, key)``: NFKC, the domain lower-cased (IDNA), the key case-folded.

    ``new``: the address is about to be stored (an account, a share, an alert
    recipient); then a local part over 64 octets is refused too (RFC 5321 §4.5.3.1.1,
    in UTF-8 for RFC 6531): no mail server has to accept it, so it could not be verified
    by mail. Lookups (sign-in, reset) take it, so an account stored before still works.

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
    # email-validator's ``strict`` counts characters, not octets: counted here.
    if new and len(result.local_part.encode()) > _LOCAL_PART_MAX_OCTETS:
        raise InvalidEmailError(
            "The email address is too long before the @-sign "
            f"(over {_LOCAL_PART_MAX_OCTETS} octets)."
        )
    email = unicodedata.normalize("NFKC", result.normalized)
    local, _, domain = email.rpartition("@")
    email = f"{local}@{domain.lower()}"
    key = email.casefold()
    if new and max(len(email), len(key)) > _STORED_MAX_CHARS:
        raise InvalidEmailError(
            f"The email address is too long (over {_STORED_MAX_CHARS} characters once normalized)."
        )
    return email, key
