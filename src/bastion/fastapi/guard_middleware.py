"""The guard, as one pure ASGI layer: each request is decided once, before the route.

In order, each step reading what the one before found:

1. the route the request reaches, matched once in the route table compiled from the
   app's routes (:class:`~bastion.fastapi.routes.RouteTable`: requirement, rate class,
   accepted media types);
2. the credential, read once through its transport (the bearer header, or the access
   cookie in cookie mode), and its signature verified (from the token cache); a bearer
   token of a configured external issuer (resource-server mode) is verified against
   that issuer's keys and mapped to its local principal;
3. the rate limits (:class:`~bastion.fastapi.middleware.rate_limit.RateLimits`), keyed by
   the verified user, which on Redis read the token's revocation state along;
4. the cross-site checks of cookie-mode requests
   (:class:`~bastion.fastapi.middleware.csrf.CSRFCheck`);
5. the decision (:meth:`~bastion.fastapi.Guard.authorize`): deny by default for a route
   that declares nothing (a plain Starlette route, a mounted app), authentication where
   the route needs a signed-in caller, the session's CSRF token, the role.

The outcome is published in ``scope["auth"]`` (:class:`~bastion.fastapi.GuardResult`)
before the request goes on: the body cap and media types, the route's declaration and the
metrics read it. A request that reaches no route goes on undecided, for the router's 404
or 405. A refusal answers as the app's problem handlers would.

The body cap stays a layer of its own, inside the request timeout and the input events:
it counts the body as the route reads it, long after this layer has decided.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette._utils import get_route_path  # the router's own path (root path stripped)
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from bastion.accounts import ExternalPrincipals
from bastion.authz import decide_route
from bastion.errors import BastionError, InvalidTokenError
from bastion.fastapi.auth_result import AUTH_KEY, Credential, GuardResult
from bastion.fastapi.dependencies import Guard
from bastion.fastapi.middleware.csrf import CSRFCheck
from bastion.fastapi.middleware.rate_limit import RateLimits, client_ip_of
from bastion.fastapi.problems import error_response
from bastion.fastapi.routes import router_serves
from bastion.fastapi.transports import read_credential
from bastion.throttle import Verdict

__all__ = ["GuardMiddleware"]


class GuardMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        guard: Guard,
        verify_token: Callable[[str], Any],
        rate_limits: RateLimits | None = None,
        csrf: CSRFCheck | None = None,
        external: ExternalPrincipals | None = None,
    ) -> None:
        """``verify_token(token)`` returns the claims of a validly signed access token
        (with ``sub``) or raises; ``rate_limits`` and ``csrf`` are the steps the settings
        turn on (None: that step is skipped); ``external`` verifies the bearer tokens of
        external issuers (None: only Bastion's own tokens are accepted)."""
        self.app = app
        self._guard = guard
        self._verify = verify_token
        self._limits = rate_limits
        self._csrf = csrf
        self._external = external

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await _refuse_websocket(receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})
        router = scope["app"].router
        # The path the router matches: without the root path of a mounted app or proxy.
        path = get_route_path(scope)
        entry, _, _ = self._guard.table.match(router, scope["method"], path, scope)
        requirement = entry.requirement if entry is not None else None
        # The signature is checked where it counts: the limiter keys by the verified
        # user; a route for signed-in callers authenticates the token.
        verify = self._limits is not None or (
            requirement is not None and requirement.kind != "public"
        )
        credential = self._credential(scope, verify=verify)
        if credential is not None and credential.claims is None and verify and self._external:
            credential = await self._external_credential(credential, self._external)
        claims = credential.claims if credential is not None else None
        verdict: Verdict | None = None
        if self._limits is not None:
            ip = client_ip_of(scope, self._guard.proxies)
            route_class = self._limits.route_class(scope["method"], entry.rate if entry else None)
            verdict = await self._limits.acquire(ip, route_class, claims)
            if await self._limits.refuse(scope, send, verdict, route_class, ip, claims):
                return
            if credential is not None and claims is not None and verdict.reads is not None:
                # The values belong to this token: its verified claims named the keys.
                credential = Credential(
                    credential.token, credential.source, claims, verdict.reads, credential.issuer
                )
            send = RateLimits.with_headers(send, verdict)
        scope[AUTH_KEY] = GuardResult(entry, credential, verdict)
        if self._csrf is not None and await self._csrf.refuse(scope, send):
            return
        try:
            if entry is not None:
                await self._guard.authorize(scope)
            elif router_serves(router, scope):
                # A route of a kind the table does not hold (a host, a mount, a route
                # without methods): it declares nothing, so nobody may call it.
                self._guard.enforce(scope, decide_route(None, None, self._guard.roles))
        except BastionError as exc:
            response = await error_response(Request(scope, receive), exc)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _credential(self, scope: Scope, *, verify: bool) -> Credential | None:
        found = read_credential(scope, self._guard.cookies)
        if found is None:
            return None
        token, source = found
        claims = None
        if verify:
            try:
                claims = self._verify(token)
            except Exception:
                claims = None  # refused by the decision if the route needs a caller
        return Credential(token, source, claims)

    @staticmethod
    async def _external_credential(
        credential: Credential, external: ExternalPrincipals
    ) -> Credential:
        """``credential`` verified as an external issuer's bearer token when it names a
        configured one (an access cookie is always Bastion's own)."""
        issuer = external.claims_issuer(credential.token)
        if issuer is None or credential.source != "bearer":
            return credential
        try:
            claims = await external.verify(credential.token)
        except InvalidTokenError as exc:
            return Credential(credential.token, "bearer", issuer=issuer, refusal=exc.reason)
        return Credential(credential.token, "bearer", claims, issuer=issuer)


async def _refuse_websocket(receive: Receive, send: Send) -> None:
    """WebSocket routes cannot declare a requirement yet: every handshake is refused
    (closed before it is accepted, which the server answers with 403), so none is served
    unguarded, cookie-authenticated from another site included."""
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.close", "code": 1008})
