"""Password storage and password policy.

:class:`PasswordHasher` hashes with Argon2id in a bounded worker pool and verifies
Argon2id hashes (and, for upgrade only, imported bcrypt hashes); :class:`PasswordPolicy`
decides whether a new password is acceptable. Parameter sets are named
:class:`Argon2Profile` values; the default is :data:`RFC9106_LOW_MEMORY`.
"""

from __future__ import annotations

from bastion.passwords._hasher import PasswordHasher
from bastion.passwords.breached import (
    BreachCheck,
    BreachChecks,
    BreachCheckUnavailableError,
    BreachVerdict,
    PwnedFile,
    PwnedRangeAPI,
)
from bastion.passwords.policy import PasswordPolicy
from bastion.passwords.profiles import (
    OWASP_MINIMUM,
    PROFILES,
    RFC9106_LOW_MEMORY,
    TEST_ONLY_INSECURE,
    Argon2Profile,
    is_below_owasp_floor,
)

__all__ = [
    "OWASP_MINIMUM",
    "PROFILES",
    "RFC9106_LOW_MEMORY",
    "TEST_ONLY_INSECURE",
    "Argon2Profile",
    "BreachCheck",
    "BreachCheckUnavailableError",
    "BreachChecks",
    "BreachVerdict",
    "PasswordHasher",
    "PasswordPolicy",
    "PwnedFile",
    "PwnedRangeAPI",
    "is_below_owasp_floor",
]
