"""What a limit is, what the limiter is asked, and what it answers."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import limits

from bastion.errors import ServiceUnavailableError

__all__ = [
    "Check",
    "Escalation",
    "Limiter",
    "Policy",
    "PolicyState",
    "StoreUnavailableError",
    "Verdict",
]


_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}")


class StoreUnavailableError(ServiceUnavailableError):
    """The shared limiter store (Redis) did not answer."""


@dataclass(frozen=True)
class Policy:
    """A quota of ``quota`` requests per ``window`` seconds, named as in the headers."""

    name: str
    quota: int
    window: int

    def __post_init__(self) -> None:
        # A name is a Structured Fields string in the headers: keep it plain.
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"policy name {self.name!r}: use a-z, 0-9, '-', '_' or '.'")
        if self.quota < 1 or self.window < 1:
            raise ValueError(f"policy {self.name!r}: quota and window must be positive")

    @classmethod
    def parse(cls, name: str, text: str) -> Policy:
        """``"100/minute"``, ``"5 per 10 seconds"``...: the ``limits`` notation."""
        try:
            item = limits.parse(text)
        except ValueError as exc:
            raise ValueError(f"policy {name!r}: cannot read {text!r} ({exc})") from None
        return cls(name, item.amount, int(item.get_expiry()))

    def __str__(self) -> str:
        return f"{self.quota}/{self.window}s"


@dataclass(frozen=True)
class Check:
    """One policy applied to one partition of callers (``ip:203.0.113.7``, ``user:<id>``)."""

    policy: Policy
    key: str

    @property  # not cached: a Check lives one request, and cached_property locks (3.11)
    def storage_key(self) -> str:
        return f"{self.policy.name}|{self.key}"


@dataclass(frozen=True)
class PolicyState:
    """A policy after this request: ``remaining`` requests, full again in ``reset`` s."""

    policy: Policy
    remaining: int
    reset: int


@dataclass(frozen=True)
class Escalation:
    """Repeat offenders: ``after`` refusals within ``window`` seconds block the caller for
    ``base`` seconds, doubling with each further block up to ``cap``; the block level is
    forgotten after ``decay`` seconds without one. ``after=0`` turns blocking off."""

    after: int = 10
    window: int = 60
    base: int = 60
    cap: int = 3600
    decay: int = 86400

    def block_seconds(self, level: int) -> int:
        return min(self.base << min(max(level - 1, 0), 40), self.cap)


@dataclass(frozen=True)
class Verdict:
    """The limiter's answer for one request.

    ``allowed`` is all-or-nothing: a refused request consumes no quota of any policy.
    ``retry_after`` (seconds) says when the refused request could pass; ``violated`` names
    the refusing policies (empty for a repeat-offender block, ``blocked``).
    ``escalated_to`` is the block level this refusal started (0: none). ``degraded``
    says the shared store failed and the in-process limiter decided. ``reads`` holds the
    values of the keys ``acquire`` was asked to read along (None: this limiter cannot).
    """

    allowed: bool
    states: tuple[PolicyState, ...] = ()
    retry_after: int = 0
    violated: tuple[str, ...] = ()
    blocked: bool = False
    escalated_to: int = 0
    degraded: bool = False
    reads: tuple[bytes | None, ...] | None = None

    @property
    def closest(self) -> PolicyState | None:
        """The policy nearest its limit (lowest share of its quota left)."""
        if not self.states:
            return None
        return min(self.states, key=lambda s: (s.remaining / s.policy.quota, s.remaining))

    @property
    def remaining(self) -> int | None:
        closest = self.closest
        return closest.remaining if closest else None


def ceil_seconds(milliseconds: float) -> int:
    return max(0, math.ceil(milliseconds / 1000 - 1e-9))


class Limiter(Protocol):
    """Checks every limit of one request together.

    ``acquire`` consumes one unit of each check's policy if all of them have one left, and
    none otherwise; ``offender`` names the caller for repeat-offender blocks (None: no
    blocking, for partitions an attacker could fill on someone else's behalf).

    ``reads`` names keys of the limiter's store to read in the same round trip (the
    revocation state of the request's token, on Redis); their values come back in
    :attr:`Verdict.reads`, or None from a limiter whose store does not hold them.

    Raises:
        StoreUnavailableError: the shared store did not answer.
    """

    async def acquire(
        self, checks: Sequence[Check], *, offender: str | None, reads: Sequence[str] = ()
    ) -> Verdict: ...

    async def peek(self, checks: Sequence[Check]) -> tuple[PolicyState, ...]:
        """The state of each check without consuming anything."""
        ...

    async def reset(self, key: str, policy: Policy) -> None:
        """Forget one partition's use of one policy."""
        ...

    async def ping(self) -> bool: ...

    async def aclose(self) -> None: ...
