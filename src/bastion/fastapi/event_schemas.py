"""Query types and response models of ``GET /admin/security/events``.

Every filter is validated strictly before it reaches a store (OWASP ASVS 5.1.3, input
validation by allowlist): lengths are capped at the stored columns' sizes, an IP address
must parse as one and is compared in its canonical text, and times are RFC 3339 strings
with a zone, never Unix numbers.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)

from bastion.fastapi.schemas import RFC3339Time
from bastion.stores import Severity

__all__ = [
    "EventTime",
    "EventTypeFilter",
    "IPFilter",
    "SecurityEventList",
    "SecurityEventOut",
]


def _canonical_ip(value: str) -> str:
    """The address as the event log writes it (``2001:DB8::1`` finds ``2001:db8::1``)."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError("must be an IPv4 or IPv6 address") from None


EventTime = RFC3339Time
# Event types are snake_case names; unknown ones are fine (they simply match nothing),
# but nothing longer than the stored column or outside the names' characters.
EventTypeFilter = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
]
# 45 characters: the longest textual IPv6 address (an IPv4-mapped one), the column's size.
IPFilter = Annotated[
    str, StringConstraints(min_length=2, max_length=45), AfterValidator(_canonical_ip)
]


class SecurityEventOut(BaseModel):
    """A stored security event in the contract's shape (API.md, "Security event"): the
    same object as its log line, with any extra fields its emitter recorded."""

    model_config = ConfigDict(extra="allow")

    timestamp: str = Field(
        description="UTC, RFC 3339 with Z, millisecond precision",
        json_schema_extra={"format": "date-time"},
    )
    event_type: str
    user_id: str | None
    ip_address: str | None
    endpoint: str | None
    method: str | None
    details: str
    severity: Severity
    request_id: str | None


class SecurityEventList(BaseModel):
    items: list[SecurityEventOut]
    next_cursor: str | None = Field(
        description="Opaque; pass it as cursor for the next (older) page; null on the last."
    )
