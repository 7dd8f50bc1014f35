"""Rate limits before anything else runs: per IP, and per user (or IP) and route class.

Every request is checked against the ``ip`` policy for its client address and against
the policy of its route class (``reads``, ``writes``, ``deletes``, or the class a route
declares, such as ``login-ip``), keyed by the signed-in user when the bearer token's
signature verifies, else by the IP. All of them in one limiter call, before the body is
read; on Redis the same script reads the token's revocation state along, which the guard
then uses (one round trip a request). Limited responses carry the
draft-ietf-httpapi-ratelimit-headers-10 fields; a refusal is 429 with ``Retry-After``
and the ``quota-exceeded`` problem type. The guard's middleware runs these limits as its
first step, from its own route match and credential (:class:`RateLimits`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from starlette.types import Message, Scope, Send

from bastion.events import EventLog, RequestContext
from bastion.fastapi.problems import (
    quota_problem_body,
    rate_headers,
    send_problem,
    send_problem_body,
)
from bastion.net import TrustedProxies, rate_partition
from bastion.throttle import Check, Limiter, Policy, Verdict

__all__ = ["CREDENTIAL_CLASSES", "RateLimits", "client_ip_of", "method_class"]

# Routes whose abuse is an attack on credentials: they fail closed when limits cannot be
# shared (Redis down), whatever the setting for other routes.
CREDENTIAL_CLASSES = frozenset({"login-ip", "register", "refresh", "password-reset", "links"})


def method_class(method: str) -> str:
    if method in ("GET", "HEAD", "OPTIONS"):
        return "reads"
    return "deletes" if method == "DELETE" else "writes"


def context_of(scope: Scope, proxies: TrustedProxies) -> RequestContext:
    """Where a request happened, for its events, from the ASGI scope (middleware)."""
    return RequestContext(
        ip_address=client_ip_of(scope, proxies),
        endpoint=scope["path"],
        method=scope["method"],
        request_id=scope.get("state", {}).get("request_id"),
    )


def client_ip_of(scope: Scope, proxies: TrustedProxies) -> str | None:
    """The client address of a request (kept in the scope's state for every later layer)."""
    state = scope.setdefault("state", {})
    if "client_ip" in state:
        return state["client_ip"]  # type: ignore[no-any-return]
    client = scope.get("client")
    peer, port = (client[0], client[1]) if client else (None, None)
    name = proxies.header_key  # only the header the operator says the proxy sets
    values: list[str] = []
    forwarded_for: list[str] = []
    for key, value in scope["headers"]:
        if key == name:
            values.append(value.decode("latin-1"))
        if key == b"x-forwarded-for":
            forwarded_for.append(value.decode("latin-1"))
    # An address the server took from a header nobody trusts is nobody's (None: these
    # requests share the "unknown" quota).
    taken = proxies.server_took_it(peer, port, forwarded_for)
    ip = None if taken else proxies.client_ip(peer, values)
    state["client_ip"] = ip
    return ip


class RateLimits:
    """The guard's rate-limit step (:class:`~bastion.fastapi.GuardMiddleware` runs it
    first, before the body is read): one limiter call a request, whose refusals it
    answers itself (429, or 503 while the shared store is down where that must fail
    closed); an allowed request goes on with the limit's header fields."""

    def __init__(
        self,
        *,
        limiter: Limiter,
        policies: Mapping[str, Policy],
        events: EventLog,
        fail_closed: bool = False,
        on_blocked: Callable[[], None] | None = None,
        revocation_reads: Callable[[Any], Sequence[str] | None] | None = None,
    ) -> None:
        """``fail_closed`` refuses every route, not only the credential routes, while
        the shared limiter store is down; ``on_blocked`` is called for each refusal of a
        repeat-offender block, which logs no event; ``revocation_reads(claims)`` names
        the revocation keys of a verified token for the limiter to read along (only for
        a limiter on the revocation store's Redis)."""
        self._limiter = limiter
        self._policies = dict(policies)
        self._events = events
        self.fail_closed = fail_closed
        self._on_blocked = on_blocked
        self._revocation_reads = revocation_reads

    def route_class(self, method: str, declared: str | None) -> str:
        """The class a request counts against: the route's declared one, else its method's."""
        if declared and declared in self._policies:
            return declared
        return method_class(method)

    async def acquire(self, ip: str | None, route_class: str, claims: Any) -> Verdict:
        """Take one request from the IP's and the route class's quotas, keyed by the
        user of ``claims`` (a verified token) where the class is not a credential one;
        the verdict carries the token's revocation state when the script read it."""
        subject = str(claims.sub) if claims is not None else None
        ip_key = f"ip:{rate_partition(ip)}"
        caller = f"user:{subject}" if subject and route_class not in CREDENTIAL_CLASSES else ip_key
        checks = [Check(self._policies[route_class], caller)]
        if "ip" in self._policies:
            checks.insert(0, Check(self._policies["ip"], ip_key))
        reads: Sequence[str] = ()
        if claims is not None and self._revocation_reads is not None:
            reads = self._revocation_reads(claims) or ()
        return await self._limiter.acquire(
            checks, offender=f"user:{subject}" if subject else ip_key, reads=reads
        )

    async def refuse(
        self,
        scope: Scope,
        send: Send,
        verdict: Verdict,
        route_class: str,
        ip: str | None,
        claims: Any,
    ) -> bool:
        """Answer the request if ``verdict`` refuses it (and say so)."""
        if verdict.degraded and (self.fail_closed or route_class in CREDENTIAL_CLASSES):
            await self._unavailable(scope, send, ip)
            return True
        if verdict.allowed:
            return False
        subject = str(claims.sub) if claims is not None else None
        self._refused(scope, verdict, ip, subject)
        await _send_quota_problem(
            send, verdict, rate_headers(verdict), scope["state"].get("request_id")
        )
        return True

    @staticmethod
    def with_headers(send: Send, verdict: Verdict) -> Send:
        """``send`` adding the limit's header fields to the response."""
        headers = rate_headers(verdict)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                own = message.get("headers", [])
                # A limit refusing inside the route (per account) sent its own fields.
                if not any(name.lower() == b"ratelimit" for name, _ in own):
                    message["headers"] = [*own, *headers]
            await send(message)

        return send_with_headers

    def _context(self, scope: Scope, ip: str | None) -> RequestContext:
        return RequestContext(
            ip_address=ip,
            endpoint=scope["path"],
            method=scope["method"],
            request_id=scope["state"].get("request_id"),
        )

    def _refused(self, scope: Scope, verdict: Verdict, ip: str | None, subject: str | None) -> None:
        if verdict.blocked:
            if self._on_blocked is not None:
                self._on_blocked()  # counted (metrics), not logged
            return  # its block was logged when it started: a flood costs no event each
        context = self._context(scope, ip)
        self._events.emit_soon(
            "rate_limit_exceeded",
            context=context,
            user_id=subject,
            details=f"rate limit {', '.join(verdict.violated)} exceeded",
            violated_policies=list(verdict.violated),
            retry_after=verdict.retry_after,
        )
        if verdict.escalated_to:
            self._events.emit_soon(
                "suspicious_activity",
                context=context,
                user_id=subject,
                details=(
                    f"repeated rate-limit refusals: blocked for {verdict.retry_after} s "
                    f"(level {verdict.escalated_to})"
                ),
                block_level=verdict.escalated_to,
            )

    async def _unavailable(self, scope: Scope, send: Send, ip: str | None) -> None:
        self._events.emit_soon(
            "rate_limit_unavailable",
            context=self._context(scope, ip),
            details="refused: rate limits cannot be shared while their store is down",
        )
        await send_problem(
            send,
            503,
            "service-unavailable",
            "Service unavailable",
            "The service cannot check its limits right now; try again shortly.",
            scope["state"].get("request_id"),
            headers=[(b"retry-after", b"5")],
        )


async def _send_quota_problem(
    send: Send, verdict: Verdict, headers: list[tuple[bytes, bytes]], request_id: str | None
) -> None:
    body = quota_problem_body(
        verdict.retry_after, list(verdict.violated), request_id, blocked=verdict.blocked
    )
    retry_after = (b"retry-after", str(verdict.retry_after).encode())
    await send_problem_body(send, body, [retry_after, *headers])
