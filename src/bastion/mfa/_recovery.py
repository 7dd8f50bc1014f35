"""Recovery codes: ten per account, 60 random bits each (12 base32 characters, shown as
``xxxx-xxxx-xxxx``), stored only as keyed digests (HMAC-SHA-256 under a key outside the
database, bound to the account), each good once."""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = ["RECOVERY_CODES", "RecoveryCodes"]

RECOVERY_CODES = 10
_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"  # base32: 5 bits a character
_LENGTH = 12  # 60 bits
_GROUP = 4


class RecoveryCodes:
    def __init__(self, key: bytes) -> None:
        self._key = key

    @staticmethod
    def new() -> list[str]:
        codes = []
        for _ in range(RECOVERY_CODES):
            raw = "".join(secrets.choice(_ALPHABET) for _ in range(_LENGTH))
            codes.append("-".join(raw[i : i + _GROUP] for i in range(0, _LENGTH, _GROUP)))
        return codes

    @staticmethod
    def looks_like(code: str) -> bool:
        return len(_normalized(code)) == _LENGTH

    def digest(self, code: str, *, user_id: str) -> str:
        message = f"{user_id}\n{_normalized(code)}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()


def _normalized(code: str) -> str:
    """Case, spaces and dashes do not count (a code read out or typed by hand)."""
    return "".join(code.split()).replace("-", "").lower()
