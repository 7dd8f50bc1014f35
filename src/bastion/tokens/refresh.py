"""Opaque refresh tokens: 256 random bits, stored only as SHA-256 digests.

ASVS 7.2.3 asks for at least 128 bits from a CSPRNG and RFC 6749 §10.10 a guessing
probability of at most 2^-160; 256 bits exceed both. The database keeps the digest only,
so a leaked table holds no usable token (STYLE principle 10). A fast hash suffices: the
input is random, not a human secret.
"""

from __future__ import annotations

import hashlib
import secrets

__all__ = ["REFRESH_TOKEN_BYTES", "new_refresh_token", "refresh_digest"]

REFRESH_TOKEN_BYTES = 32


def new_refresh_token() -> str:
    return secrets.token_urlsafe(REFRESH_TOKEN_BYTES)


def refresh_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
