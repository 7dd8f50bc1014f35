"""FastAPI dependencies: who the caller is, and whether the route lets it through.

Every route declares what it needs with one of the :class:`Guard` declarations; the
requirement travels on the dependency, so the route table carries it
(:mod:`bastion.fastapi.routes`). :meth:`Guard.gate`, installed on the whole app, refuses
every request to a route that declares nothing: a new route cannot ship unguarded
(OWASP API5:2023, "deny all access by default").

Each request gets a :class:`~bastion.authz.Decision` in ``request.state.decision``;
every deny is logged as ``permission_denied`` (or ``auth_failure`` for a missing or bad
token) with that decision.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, NoReturn, Protocol, TypeVar
from uuid import UUID

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from starlette.routing import BaseRoute

from bastion.accounts import AccountService, Principal
from bastion.authz import (
    Decision,
    ObjectRule,
    Permission,
    Requirement,
    RolePermissions,
    Subject,
    decide_object,
    decide_route,
)
from bastion.errors import CSRFError, InvalidTokenError, NotFoundError, PermissionDeniedError
from bastion.events import EventLog, RequestContext
from bastion.fastapi.middleware.csrf import SAFE_METHODS
from bastion.fastapi.middleware.rate_limit import CREDENTIAL_CLASSES, client_ip_of, method_class
from bastion.fastapi.routes import (
    RATE_ATTRIBUTE,
    REQUIREMENT_ATTRIBUTE,
    match_route,
    requirement_of,
    route_table,
)
from bastion.fastapi.transports import CookieTransport
from bastion.net import TrustedProxies
from bastion.throttle import Check, Limiter, Policy

__all__ = ["Authorized", "Guard", "ObjectResolver", "Resolved"]


class _SignedIn(OAuth2PasswordBearer):
    """A signed-in route's dependency: reads the bearer token and runs the guard's check.

    It is the OAuth2 bearer scheme itself (the OpenAPI document shows it on the route)
    rather than a function depending on one: one dependency to solve per request, not
    two. ``auto_error=False``: a missing token is our 401 problem, not FastAPI's plain
    401. Tokens are read from the Authorization header only; ``?access_token=`` is never
    looked at (RFC 6750 §2.3 is optional and leaks tokens into logs).
    """

    def __init__(self, check: Callable[[Request, str | None], Awaitable[Any]]) -> None:
        super().__init__(
            tokenUrl="/auth/token", auto_error=False, scheme_name="OAuth2PasswordBearer"
        )
        self._check = check

    async def __call__(self, request: Request) -> Any:  # type: ignore[override]
        return await self._check(request, await super().__call__(request))


T = TypeVar("T")


@dataclass(frozen=True)
class Resolved(Generic[T]):
    """What a resolver found: whether the object exists, the subject's relation to it
    (``owner``, ``edit``, ``read``..., or None), and the object itself."""

    exists: bool
    relation: str | None = None
    resource: T | None = None


class ObjectResolver(Protocol[T]):
    """Loads one object and the subject's relation to it, from the path parameters, in
    one query. ``what`` names the kind of object in decisions ("task")."""

    what: str

    async def __call__(self, subject: Subject, path_params: Mapping[str, Any]) -> Resolved[T]: ...


@dataclass(frozen=True)
class Authorized(Generic[T]):
    """An allowed object-level request: the caller, the object, and why it was allowed."""

    principal: Principal
    resource: T
    decision: Decision


def _declared(requirement: Requirement, call: Any, rate: str | None = None) -> Any:
    setattr(call, REQUIREMENT_ATTRIBUTE, requirement)
    if rate is not None:
        setattr(call, RATE_ATTRIBUTE, rate)
    return Depends(call)


class Guard:
    """Authentication, authorization and decisions for the routes of one app."""

    def __init__(
        self,
        service: AccountService,
        events: EventLog,
        proxies: TrustedProxies | None = None,
        roles: RolePermissions | None = None,
        limits: tuple[Limiter, Mapping[str, Policy]] | None = None,
        cookies: CookieTransport | None = None,
    ) -> None:
        """``limits`` (the limiter and its policies) lets :meth:`explain` say how many
        requests the user has left; ``cookies`` turns the cookie mode on: a request
        without an ``Authorization`` header may then be authenticated by its access
        cookie, and a state-changing one needs the session's CSRF token too."""
        self.service = service
        self.cookies = cookies
        self.events = events
        self.proxies = proxies or TrustedProxies()
        self.roles = roles or RolePermissions()
        self.limits = limits
        self._requirements: dict[int, Requirement | None] = {}

    def context(self, request: Request) -> RequestContext:
        cached = getattr(request.state, "security_context", None)
        if isinstance(cached, RequestContext):
            return cached
        ip = client_ip_of(request.scope, self.proxies)
        context = RequestContext(
            ip_address=ip,
            endpoint=request.url.path,
            method=request.method,
            request_id=getattr(request.state, "request_id", None),
        )
        request.state.security_context = context
        return context

    # -- declarations ------------------------------------------------------------------

    def public(self, note: str, *, rate: str | None = None) -> Any:
        """Anyone may call the route; ``note`` says why (it shows in the route table).

        ``rate`` names the route's rate-limit class (a policy such as ``login-ip``)
        when it is not the one its method implies (reads, writes, deletes)."""
        requirement = Requirement.public(note)

        async def public_route(request: Request) -> None:
            await self.enforce(request, decide_route(requirement, None, self.roles))

        return _declared(requirement, public_route, rate)

    def authenticated(self) -> Any:
        """Any signed-in, active account; the route acts on the caller's own data only."""
        return self._signed_in(Requirement.authenticated())

    def require(self, *permissions: Permission) -> Any:
        """The caller's current role must hold every permission in ``permissions``."""
        return self._signed_in(Requirement.permission(*permissions))

    def _signed_in(self, requirement: Requirement) -> Any:
        async def signed_in(request: Request, token: str | None) -> Principal:
            principal = await self._authenticate(request, token)
            await self.enforce(request, decide_route(requirement, principal.subject, self.roles))
            return principal

        return _declared(requirement, _SignedIn(signed_in))

    def require_object(self, rule: ObjectRule, resolver: ObjectResolver[Any]) -> Any:
        """The role must hold ``rule.permission`` and the caller's relation to the object
        of the path must satisfy ``rule``; the route receives :class:`Authorized`."""
        requirement = Requirement.permission(rule=rule, resolver=resolver)

        async def object_permitted(request: Request, token: str | None) -> Authorized[Any]:
            principal = await self._authenticate(request, token)
            subject = principal.subject
            await self.enforce(request, decide_route(requirement, subject, self.roles))
            decision, found = await self._decide_object(
                rule, resolver, subject, request.path_params
            )
            await self.enforce(request, decision, quiet=not found.exists)
            return Authorized(principal, found.resource, decision)

        return _declared(requirement, _SignedIn(object_permitted))

    async def _decide_object(
        self,
        rule: ObjectRule,
        resolver: ObjectResolver[Any],
        subject: Subject,
        path_params: Mapping[str, Any],
    ) -> tuple[Decision, Resolved[Any]]:
        found = await resolver(subject, path_params)
        decision = decide_object(
            rule,
            subject,
            self.roles,
            exists=found.exists,
            relation=found.relation,
            what=resolver.what,
        )
        return decision, found

    # -- enforcement -------------------------------------------------------------------

    async def _authenticate(self, request: Request, token: str | None) -> Principal:
        from_cookie = False
        if token is None and self.cookies is not None and "authorization" not in request.headers:
            token = self.cookies.access_token(request)
            from_cookie = token is not None
        try:
            if not token:
                raise InvalidTokenError("no bearer token")
            # The rate limiter verified the signature already, and on Redis read the
            # revocation state along: both only for this very token.
            state = request.scope.get("state", {})
            verified = state.get("verified_token")
            claims = verified[1] if verified and verified[0] == token else None
            revocation = state.get("revocation_read") if claims is not None else None
            principal = await self.service.authenticate(
                token, verified=claims, revocation=revocation
            )
        except InvalidTokenError as exc:
            request.state.decision = Decision("deny", "no valid access token", http_status=401)
            self.events.emit_soon(
                "auth_failure",
                context=self.context(request),
                details=f"access token refused ({exc.reason})",
            )
            raise
        if from_cookie and request.method not in SAFE_METHODS:
            self._check_csrf(request, principal)
        request.state.principal = principal
        return principal

    def _check_csrf(self, request: Request, principal: Principal) -> None:
        """A cookie session's state-changing request carries the CSRF token signed for
        that very session (OWASP "Signed Double-Submit Cookie"): a token of another
        session, or none, is refused."""
        assert self.cookies is not None
        if self.cookies.csrf_valid(request, principal.session_id):
            return
        request.state.decision = Decision(
            "deny",
            "CSRF token missing or not this session's",
            str(principal.user_id),
            principal.role,
            http_status=403,
        )
        reason = "token missing or not signed for this session"
        self.log_csrf_refusal(request, reason, user_id=str(principal.user_id))
        raise CSRFError(f"CSRF {reason}")

    def log_csrf_refusal(self, request: Request, reason: str, user_id: str | None = None) -> None:
        """One ``suspicious_activity`` event (OWASP ``malicious_csrf``) for a refusal."""
        self.events.emit_soon(
            "suspicious_activity",
            context=self.context(request),
            user_id=user_id,
            details=f"CSRF refused: {reason}",
            severity="high",
            category="malicious_csrf",
        )

    async def enforce(self, request: Request, decision: Decision, *, quiet: bool = False) -> None:
        """Record ``decision``; on deny, log ``permission_denied`` (unless ``quiet``: a
        missing object is no attack) and raise the error the decision's status names."""
        verdict = getattr(request.state, "rate_limit", None)
        if verdict is not None and decision.rate_limit_remaining is None:
            decision = dataclasses.replace(decision, rate_limit_remaining=verdict.remaining)
        request.state.decision = decision
        if decision.allowed:
            return
        if not quiet:
            # Written after the response: a hidden object answers as fast as a missing one.
            self.events.emit_soon(
                "permission_denied",
                context=self.context(request),
                user_id=decision.user_id,
                details=decision.reason,
                decision=decision.to_dict(),
            )
        self._raise(decision)

    @staticmethod
    def _raise(decision: Decision) -> NoReturn:
        if decision.http_status == 401:
            raise InvalidTokenError(decision.reason)
        if decision.http_status == 404:
            raise NotFoundError("not found")
        raise PermissionDeniedError(decision.reason, decision=decision)

    async def gate(self, request: Request) -> None:
        """App-wide dependency: refuse every route that declares no requirement."""
        route = request.scope.get("route")
        key = id(route)
        if key not in self._requirements:
            self._requirements[key] = requirement_of(route)
        if self._requirements[key] is None:
            await self.enforce(request, decide_route(None, None, self.roles))

    # -- explanation -------------------------------------------------------------------

    async def explain(
        self, routes: Iterable[BaseRoute], user_id: UUID, method: str, path: str
    ) -> Decision:
        """What the guard would decide for ``user_id`` calling ``method path``, and why.

        Uses the stored role and state of the user (not a token), and for object routes
        the same resolver as the route, so the answer is the route's own.
        """
        subject = await self.service.subject(user_id)
        entry, params, status = match_route(route_table(routes), method, path)
        if entry is None:
            reason = "no such route" if status == 404 else f"method {method} not allowed"
            return Decision(
                "deny",
                reason,
                str(user_id),
                subject.role if subject else None,
                http_status=status,
            )
        if subject is None:
            return Decision("deny", "no such user", str(user_id), http_status=401)
        requirement = entry.requirement
        decision = decide_route(requirement, subject, self.roles)
        rule = requirement.rule if requirement is not None else None
        resolver = requirement.resolver if requirement is not None else None
        if decision.allowed and rule is not None and resolver is not None:
            decision, _ = await self._decide_object(rule, resolver, subject, params)
        remaining = await self._remaining(user_id, entry.rate or method_class(method))
        return dataclasses.replace(decision, rate_limit_remaining=remaining)

    async def _remaining(self, user_id: UUID, route_class: str) -> int | None:
        """What the user has left of the route class's quota, taking nothing."""
        if self.limits is None:
            return None
        limiter, policies = self.limits
        policy = policies.get(route_class)
        if policy is None or route_class in CREDENTIAL_CLASSES:
            return None  # keyed by IP or account, not by this user
        [state] = await limiter.peek([Check(policy, f"user:{user_id}")])
        return state.remaining
