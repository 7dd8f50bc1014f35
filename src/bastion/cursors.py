"""Opaque keyset-pagination cursors: the (created_at, id) of the last row of a page,
or the (timestamp, id) of the last security event of a page.

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

from bastion.errors import BastionError

__all__ = [
    "InvalidCursorError",
    "decode_cursor",
    "decode_event_cursor",
    "encode_cursor",
    "encode_event_cursor",
]


class InvalidCursorError(BastionError, ValueError):
    """The cursor is not one this service made."""


_MAX_EVENT_ID = 2**63 - 1  # a BIGINT: a forged id past it is refused, not a database error
_INVALID = (
    ValueError,
    TypeError,
    OverflowError,
    binascii.Error,
    UnicodeDecodeError,
    RecursionError,
)


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    return _pack(created_at, str(row_id))


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """Raise InvalidCursorError for anything but a cursor of :func:`encode_cursor`."""
    try:
        moment, row_id = _unpack(cursor)
        if not isinstance(row_id, str):
            raise TypeError("cursor members are strings")
        return moment, uuid.UUID(row_id)
    except _INVALID as exc:
        raise InvalidCursorError("invalid cursor") from exc


def encode_event_cursor(timestamp: datetime, event_id: int) -> str:
    return _pack(timestamp, event_id)


def decode_event_cursor(cursor: str) -> tuple[datetime, int]:
    """Raise InvalidCursorError for anything but a cursor of :func:`encode_event_cursor`."""
    try:
        moment, event_id = _unpack(cursor)
        if type(event_id) is not int or not 0 <= event_id <= _MAX_EVENT_ID:
            raise ValueError("an event id is a non-negative 64-bit integer")
        return moment, event_id
    except _INVALID as exc:
        raise InvalidCursorError("invalid cursor") from exc


def _pack(moment: datetime, row_id: str | int) -> str:
    raw = json.dumps([moment.isoformat(), row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unpack(cursor: str) -> tuple[datetime, object]:
    """The aware UTC time and the raw id of a cursor; raises one of ``_INVALID``."""
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    created, row_id = json.loads(raw)
    if not isinstance(created, str):
        raise TypeError("cursor members are strings")
    moment = datetime.fromisoformat(created)
    if moment.tzinfo is None:
        raise ValueError("naive")
    return moment.astimezone(UTC), row_id
