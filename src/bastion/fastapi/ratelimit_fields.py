"""The rate-limit fields of draft-ietf-httpapi-ratelimit-headers-10 and the 429 body."""

from __future__ import annotations

from typing import Any

from bastion.fastapi.problems import problem_body
from bastion.throttle import Verdict

__all__ = ["QUOTA_EXCEEDED", "QUOTA_TITLE", "quota_problem_body", "rate_headers"]

QUOTA_EXCEEDED = "https://iana.org/assignments/http-problem-types#quota-exceeded"
QUOTA_TITLE = "Request cannot be satisfied as assigned quota has been exceeded"


def rate_headers(verdict: Verdict) -> list[tuple[bytes, bytes]]:
    """``RateLimit-Policy`` with every policy that applied, ``RateLimit`` with the one
    closest to its limit (Structured Fields lists of strings with parameters)."""
    closest = verdict.closest
    if closest is None:
        return []
    policies = ", ".join(
        f'"{s.policy.name}";q={s.policy.quota};w={s.policy.window}' for s in verdict.states
    )
    current = f'"{closest.policy.name}";r={closest.remaining};t={closest.reset}'
    return [(b"ratelimit-policy", policies.encode()), (b"ratelimit", current.encode())]


def quota_problem_body(
    retry_after: int, violated: list[str], request_id: str | None, *, blocked: bool = False
) -> dict[str, Any]:
    """The 429 body: the registered ``quota-exceeded`` type with ``violated-policies``
    (empty for a repeat-offender block, which the detail then names)."""
    detail = (
        f"Blocked after repeated refused requests; retry in {retry_after} s."
        if blocked
        else f"Too many requests; retry in {retry_after} s."
    )
    body = problem_body(
        429,
        "quota-exceeded",
        QUOTA_TITLE,
        detail,
        request_id,
        **{"violated-policies": violated},
    )
    body["type"] = QUOTA_EXCEEDED
    return body
