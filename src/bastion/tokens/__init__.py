"""Credentials as values: signing keys, JWT access tokens and CSRF tokens.

``AccessTokens`` is the recipe to use; ``KeySet`` is the key ring behind it, kept in a private
key file by ``ensure_key_file`` / ``load_key_file`` / ``save_key_file``; ``KeyRing`` is what a
running instance holds: it expires retired keys by the clock and follows the key file.
Failures raise :class:`bastion.errors.InvalidTokenError` (a bad token) or
:class:`bastion.errors.ConfigurationError` (bad keys or key file).
"""

from __future__ import annotations

from bastion.tokens.access import NO_ROLE, AccessClaims, AccessTokens, ExternalAccessClaims
from bastion.tokens.csrf import PRE_SESSION, CSRFTokens
from bastion.tokens.keys import (
    KeySet,
    SigningKey,
    ensure_key_file,
    load_key_file,
    save_key_file,
)
from bastion.tokens.ring import KeyRing

__all__ = [
    "NO_ROLE",
    "PRE_SESSION",
    "AccessClaims",
    "AccessTokens",
    "CSRFTokens",
    "ExternalAccessClaims",
    "KeyRing",
    "KeySet",
    "SigningKey",
    "ensure_key_file",
    "load_key_file",
    "save_key_file",
]
