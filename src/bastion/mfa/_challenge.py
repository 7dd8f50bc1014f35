"""The ``mfa_token``: what a sign-in's first step (a password, a provider, an emailed link)
hands the client when the account has a second factor. Signed (HMAC-SHA-256 under a key
derived for it), valid five minutes, bound to the client that took the first step (its
address and user agent) and to the account as it was then (its token version and
password): a password change or a revocation meanwhile voids it. Its ``nonce`` names it
for the single use and the five attempts the flow counts in the shared store."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import timedelta

from bastion.clock import Clock

__all__ = ["MFAChallengeClaims", "MFATokens"]

_VERSION = "m1"
_MAX_LENGTH = 2048


@dataclass(frozen=True)
class MFAChallengeClaims:
    user_id: str
    token_version: int
    credential: str  # a digest of the password hash when the first step was taken
    amr: tuple[str, ...]  # how the first step was proven
    passes_lock: bool
    nonce: str
    expires: int


class MFATokens:
    def __init__(self, key: bytes, *, clock: Clock, ttl: timedelta = timedelta(minutes=5)) -> None:
        self._key = key
        self._clock = clock
        self.ttl = ttl

    @staticmethod
    def credential_of(password_hash: str | None) -> str:
        return hashlib.sha256((password_hash or "").encode()).hexdigest()[:32]

    @staticmethod
    def client_of(ip: str | None, user_agent: str | None) -> str:
        return hashlib.sha256(f"{ip or ''}\n{user_agent or ''}".encode()).hexdigest()[:32]

    def issue(
        self,
        *,
        user_id: str,
        token_version: int,
        password_hash: str | None,
        amr: tuple[str, ...],
        passes_lock: bool,
        client: str,
    ) -> str:
        body = {
            "u": user_id,
            "v": token_version,
            "p": self.credential_of(password_hash),
            "a": list(amr),
            "l": passes_lock,
            "c": client,
            "n": secrets.token_urlsafe(16),
            "e": int((self._clock.now() + self.ttl).timestamp()),
        }
        payload = _b64(json.dumps(body, separators=(",", ":")).encode())
        return f"{_VERSION}.{payload}.{self._mac(payload)}"

    def read(self, token: str, *, client: str) -> MFAChallengeClaims | None:
        """The claims of a valid, unexpired token of this ``client``; None otherwise."""
        # ASCII only: what this class makes is, and compare_digest refuses other text.
        if not isinstance(token, str) or len(token) > _MAX_LENGTH or not token.isascii():
            return None
        version, _, rest = token.partition(".")
        payload, _, mac = rest.partition(".")
        if version != _VERSION or not hmac.compare_digest(
            self._mac(payload).encode(), mac.encode()
        ):
            return None
        try:
            body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            claims = MFAChallengeClaims(
                user_id=str(body["u"]),
                token_version=int(body["v"]),
                credential=str(body["p"]),
                amr=tuple(str(a) for a in body["a"]),
                passes_lock=bool(body["l"]),
                nonce=str(body["n"]),
                expires=int(body["e"]),
            )
            bound_client = str(body["c"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            return None
        if claims.expires <= self._clock.now().timestamp():
            return None
        if not hmac.compare_digest(bound_client.encode(), client.encode()):
            return None
        return claims

    def _mac(self, payload: str) -> str:
        digest = hmac.new(self._key, f"{_VERSION}.{payload}".encode(), hashlib.sha256).digest()
        return _b64(digest)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
