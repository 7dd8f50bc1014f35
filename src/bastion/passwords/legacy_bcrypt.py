"""Legacy bcrypt verification, quarantined.

Only for verifying bcrypt hashes imported from another system, so that they can be
replaced by an Argon2id hash on the account's next successful login
(:meth:`bastion.passwords.PasswordHasher.needs_rehash` is true for every bcrypt hash).
Nothing here creates a hash, and nothing should: new hashes are Argon2id only
(OWASP Password Storage Cheat Sheet, "Argon2id"; RFC 9106).

These functions block for the whole bcrypt computation; call them through
:class:`~bastion.passwords.PasswordHasher`, which runs them in its bounded pool.
"""

from __future__ import annotations

import bcrypt

__all__ = ["BCRYPT_MAX_PASSWORD_BYTES", "is_bcrypt_hash", "verify_bcrypt"]

BCRYPT_MAX_PASSWORD_BYTES = 72
"""bcrypt's key schedule reads at most this many bytes of the password."""

_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")


def is_bcrypt_hash(h: str) -> bool:
    """Whether ``h`` is in the modular crypt format of bcrypt (``$2a$``, ``$2b$``, ``$2y$``)."""
    return h.startswith(_BCRYPT_PREFIXES)


def verify_bcrypt(stored_hash: str, password: str) -> bool:
    """Whether ``password`` matches the bcrypt ``stored_hash``; never raises.

    A password longer than 72 bytes in UTF-8 is refused (``False``): bcrypt ignores
    everything after the 72nd byte, so verifying it would accept any password that
    shares those first 72 bytes. Refusing, rather than truncating, keeps the rule that
    a password is compared exactly as given (ASVS 6.2.8; OWASP Password Storage Cheat
    Sheet, "Input Limits of Legacy Hashing Algorithms"). Such a user can reset the
    password; the new hash is Argon2id, which has no such limit.

    A malformed hash, or a password that cannot be encoded in UTF-8, gives ``False``.
    """
    if not is_bcrypt_hash(stored_hash):
        return False
    try:
        secret = password.encode("utf-8")
        hashed = stored_hash.encode("ascii")
    except UnicodeError:
        return False
    if len(secret) > BCRYPT_MAX_PASSWORD_BYTES:
        return False
    try:
        return bcrypt.checkpw(secret, hashed)
    except ValueError:  # "Invalid salt": the hash is malformed
        return False
