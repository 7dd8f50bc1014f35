"""Named Argon2id parameter sets.

Parameters are chosen by name, never tuned ad hoc at call sites
(the pattern of ``argon2.profiles``). :data:`RFC9106_LOW_MEMORY` is the default;
:data:`TEST_ONLY_INSECURE` exists so test suites run fast and says so in its name.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "OWASP_MINIMUM",
    "PROFILES",
    "RFC9106_LOW_MEMORY",
    "TEST_ONLY_INSECURE",
    "Argon2Profile",
    "is_below_owasp_floor",
]


@dataclass(frozen=True, slots=True)
class Argon2Profile:
    """One Argon2id parameter set.

    ``memory_cost`` is in KiB. ``salt_len`` and ``hash_len`` are in bytes.

    Raises :class:`ValueError` for parameters Argon2 cannot run with, or for a salt
    shorter than the 128 bits RFC 9106 §3.1 recommends.
    """

    name: str
    time_cost: int
    memory_cost: int
    parallelism: int
    hash_len: int = 32
    salt_len: int = 16

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("an Argon2 profile must have a name")
        if self.time_cost < 1 or self.parallelism < 1:
            raise ValueError(f"{self.name}: time_cost and parallelism must be at least 1")
        # RFC 9106 §3.1: memory size m is at least 8*p kibibytes.
        if self.memory_cost < 8 * self.parallelism:
            raise ValueError(f"{self.name}: memory_cost must be at least 8 * parallelism KiB")
        # RFC 9106 §3.1: a 128-bit salt is recommended; §4 uses a 256-bit tag.
        if self.salt_len < 16:
            raise ValueError(f"{self.name}: salt_len must be at least 16 bytes")
        if self.hash_len < 16:
            raise ValueError(f"{self.name}: hash_len must be at least 16 bytes")


RFC9106_LOW_MEMORY = Argon2Profile(
    name="rfc9106-low-memory", time_cost=3, memory_cost=65536, parallelism=4
)
"""The default: RFC 9106 §4, second recommended option (t=3, 64 MiB, p=4).

Meant for environments where the first option's 2 GiB per hash is not affordable.
"""

OWASP_MINIMUM = Argon2Profile(name="owasp-minimum", time_cost=2, memory_cost=19456, parallelism=1)
"""The OWASP Password Storage Cheat Sheet minimum for Argon2id (t=2, 19 MiB, p=1).

For memory-constrained deployments; prefer :data:`RFC9106_LOW_MEMORY`.
"""

TEST_ONLY_INSECURE = Argon2Profile(
    name="test-only-insecure", time_cost=1, memory_cost=8, parallelism=1
)
"""INSECURE. FOR TESTS ONLY. NEVER USE IT TO STORE A REAL PASSWORD.

One pass over 8 KiB: offline guessing against it is almost free. It exists only so
that test suites hash in microseconds; :func:`is_below_owasp_floor` flags it, so
configuration can refuse it outside tests.
"""

PROFILES: dict[str, Argon2Profile] = {
    profile.name: profile for profile in (RFC9106_LOW_MEMORY, OWASP_MINIMUM, TEST_ONLY_INSECURE)
}
"""Every named profile, by name (for configuration by string)."""

# (minimum time_cost, minimum memory_cost in KiB), strongest memory demand first.
# OWASP Password Storage Cheat Sheet, "Argon2id", and ASVS Appendix C.
_OWASP_FLOORS: tuple[tuple[int, int], ...] = ((3, 12288), (2, 19456), (1, 47104))


def is_below_owasp_floor(profile: Argon2Profile) -> bool:
    """Whether ``profile`` is weaker than the OWASP / ASVS Appendix C Argon2id floors.

    The floors trade iterations for memory: t=1 needs at least 46 MiB (47104 KiB),
    t=2 at least 19 MiB (19456 KiB), t>=3 at least 12 MiB (12288 KiB); parallelism
    must be at least 1. The cheat sheet's t=4/9 MiB and t=5/7 MiB rows are not
    accepted: 12 MiB is the smallest memory cost this function lets through.
    """
    if profile.parallelism < 1:
        return True
    for min_time_cost, min_memory_cost in _OWASP_FLOORS:
        if profile.time_cost >= min_time_cost:
            return profile.memory_cost < min_memory_cost
    return True
