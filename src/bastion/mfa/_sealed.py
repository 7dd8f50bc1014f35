"""TOTP secrets sealed with AES-256-GCM under a key kept outside the database (derived
from the signing-key file), bound to their account by the associated data: a stolen
database holds no usable secret, and a sealed secret copied to another account does not
open."""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bastion.errors import BastionError

__all__ = ["SealedSecretError", "SecretBox"]

_VERSION = "v1"
_NONCE = 12  # bytes: 96-bit random nonces (NIST SP 800-38D §8.2.2)


class SealedSecretError(BastionError):
    """A sealed value that does not open: tampered with, of another account, or sealed
    under another key. Never answered with the value's details (internal-error)."""


class SecretBox:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the key must be 32 bytes")
        self._aead = AESGCM(key)

    def seal(self, plaintext: str, *, bound_to: str) -> str:
        nonce = os.urandom(_NONCE)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), _aad(bound_to))
        return f"{_VERSION}.{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def open(self, sealed: str, *, bound_to: str) -> str:
        version, _, body = sealed.partition(".")
        if version != _VERSION:
            raise SealedSecretError("unknown format")
        try:
            raw = base64.urlsafe_b64decode(body)
            return self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], _aad(bound_to)).decode()
        except (InvalidTag, ValueError):
            raise SealedSecretError("does not open") from None


def _aad(bound_to: str) -> bytes:
    return f"bastion totp secret\n{bound_to}".encode()
