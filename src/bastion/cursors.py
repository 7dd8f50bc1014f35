"""Opaque keyset-pagination cursors: the (created_at, id) of the last row of a page.

A cursor only says where a page ends; every query still applies its own filters and
access rules in SQL, so a forged cursor can move through the caller's own results but
never reach anyone else's.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import UTC, datetime

__all__ = ["InvalidCursorError", "decode_cursor", "encode_cursor"]


class InvalidCursorError(ValueError):
    """The cursor is not one this service made."""


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(row_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """Raise InvalidCursorError for anything but a cursor of :func:`encode_cursor`."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, row_id = json.loads(raw)
        if not (isinstance(created, str) and isinstance(row_id, str)):
            raise TypeError("cursor members are strings")
        moment = datetime.fromisoformat(created)
        if moment.tzinfo is None:
            raise ValueError("naive")
        return moment.astimezone(UTC), uuid.UUID(row_id)
    except (
        ValueError,
        TypeError,
        OverflowError,
        binascii.Error,
        UnicodeDecodeError,
        RecursionError,
    ) as exc:
        raise InvalidCursorError("invalid cursor") from exc
