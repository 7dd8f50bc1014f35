"""Signed, session-bound CSRF tokens for browser sessions kept in cookies.

A token is ``<nonce>.<mac>``: 256 random bits, and an HMAC-SHA256 over the session it
belongs to and the nonce (OWASP CSRF Prevention Cheat Sheet, "Signed Double-Submit
Cookie"). The browser holds it twice, in a cookie its own scripts can read and in the
``X-CSRF-Token`` header it sends; a page on another site can read neither and cannot
set the header. Binding it to the session means a token planted by someone else (a
token from the attacker's own session) does not pass for the victim's session.

Before login there is no session yet: a pre-session token is bound to the empty
binding and is good only for the login itself (login CSRF). A login issues a new token
bound to the new session, so a token seen before login is useless after it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

__all__ = ["PRE_SESSION", "CSRFTokens"]

PRE_SESSION = ""  # the binding of a token issued before login
_MAX_TOKEN_LENGTH = 128


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class CSRFTokens:
    """Issue and check CSRF tokens under one secret (derived from the key ring)."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 32:
            raise ValueError("the CSRF secret must be at least 32 bytes")
        self._secret = secret

    def _mac(self, binding: str, nonce: str) -> str:
        # Length-prefixed, so that no (binding, nonce) pair can pose as another.
        message = f"bastion-csrf\x00{len(binding)}\x00{binding}\x00{nonce}".encode()
        return _b64(hmac.new(self._secret, message, hashlib.sha256).digest())

    def issue(self, binding: str = PRE_SESSION) -> str:
        """A new token for the session ``binding`` (its id), or a pre-session token."""
        nonce = _b64(secrets.token_bytes(32))
        return f"{nonce}.{self._mac(binding, nonce)}"

    def valid(self, token: str | None, binding: str = PRE_SESSION) -> bool:
        """Whether ``token`` was issued by us for ``binding``; constant-time compare."""
        if not token or len(token) > _MAX_TOKEN_LENGTH:
            return False
        nonce, dot, mac = token.partition(".")
        if not dot or not nonce or not mac:
            return False
        return hmac.compare_digest(mac.encode(), self._mac(binding, nonce).encode())
