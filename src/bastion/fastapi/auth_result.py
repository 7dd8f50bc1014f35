"""What the guard found out about a request, published once in the ASGI scope.

:class:`~bastion.fastapi.guard_middleware.GuardMiddleware` matches the route, reads the
credential, runs the rate limit, authenticates and decides, and puts the outcome in
``scope["auth"]`` as one frozen :class:`GuardResult` (as Starlette's authentication
middleware puts its own in ``scope["auth"]`` and ``scope["user"]``). Everything after it
(the body cap, the route's declaration, the metrics) reads that result instead of
deciding again; nothing security-relevant travels in untyped ``scope["state"]`` keys.

Routes read it with :func:`guard_result`; a later fact (the object-level decision) is
recorded with :func:`record_decision`, which publishes a new result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from starlette.requests import HTTPConnection
from starlette.types import Scope

from bastion.accounts import Principal
from bastion.authz import Decision
from bastion.fastapi.routes import RouteEntry
from bastion.throttle import Verdict

__all__ = ["AUTH_KEY", "Credential", "GuardResult", "guard_result", "record_decision"]

AUTH_KEY = "auth"

Source = Literal["bearer", "cookie"]


@dataclass(frozen=True)
class Credential:
    """The access token a request carries and where it came from (the ``Authorization``
    header, or the cookie mode's access cookie).

    ``claims`` are set when the token's signature and times verified in this request;
    ``revocation`` holds the token's revocation keys as the rate limiter's script read
    them along (on Redis), for these very claims only. An external issuer's token names
    its ``issuer``."""

    token: str = dataclasses.field(repr=False)  # never in a log line
    source: Source
    claims: Any = dataclasses.field(default=None, repr=False)
    revocation: Sequence[bytes | None] | None = dataclasses.field(default=None, repr=False)
    # Resource-server mode: the external issuer the token names, and why it was refused
    # when it was (then ``claims`` is None).
    issuer: str | None = None
    refusal: str | None = None


@dataclass(frozen=True)
class GuardResult:
    """One request's guard outcome: the route entry it reaches (None: no route, the
    router answers 404 or 405), its credential, the rate limit's verdict, the signed-in
    principal (None for a public route or before authentication) and the decision."""

    route: RouteEntry | None
    credential: Credential | None = None
    rate_limit: Verdict | None = None
    principal: Principal | None = None
    decision: Decision | None = None

    @property
    def from_cookie(self) -> bool:
        return self.credential is not None and self.credential.source == "cookie"

    # Explicit copies: dataclasses.replace reads the fields anew on every call, and these
    # run on every request.
    def _signed_in(self, principal: Principal) -> GuardResult:
        return GuardResult(self.route, self.credential, self.rate_limit, principal, self.decision)

    def _decided(self, decision: Decision) -> GuardResult:
        return GuardResult(self.route, self.credential, self.rate_limit, self.principal, decision)


if tuple(f.name for f in dataclasses.fields(GuardResult)) != (
    "route",
    "credential",
    "rate_limit",
    "principal",
    "decision",
):
    raise ImportError("GuardResult's fields changed: update its copies")


def guard_result(connection: HTTPConnection | Scope) -> GuardResult | None:
    """The guard's result for a request (a Request, or an ASGI scope), or None when no
    guard ran (an app without :class:`GuardMiddleware`)."""
    scope = connection.scope if isinstance(connection, HTTPConnection) else connection
    result = scope.get(AUTH_KEY)
    return result if isinstance(result, GuardResult) else None


def record_decision(connection: HTTPConnection | Scope, decision: Decision) -> None:
    """Publish ``decision`` as the request's decision (the metrics count it)."""
    scope = connection.scope if isinstance(connection, HTTPConnection) else connection
    result = guard_result(scope) or GuardResult(route=None)
    scope[AUTH_KEY] = result._decided(decision)
