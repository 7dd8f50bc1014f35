"""The guard: who the caller is, and whether the route lets it through.

Every route declares what it needs with one of the :class:`Guard` declarations; the
requirement travels on the dependency, so the route table carries it
(:mod:`bastion.fastapi.routes`). The guard's middleware decides each request once, from
that table, before the route runs (:meth:`Guard.authorize`): a route that declares
nothing refuses every request, so a new route cannot ship unguarded (OWASP API5:2023,
"deny all access by default"). The declarations' dependencies only hand the route what
the guard published (:mod:`bastion.fastapi.auth_result`); an object route's dependency
also loads the object and decides on it.

Each request gets a :class:`~bastion.authz.Decision` in its published result; every deny
is logged as ``permission_denied`` (or ``auth_failure`` for a missing or bad token) with
that decision.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, NoReturn, Protocol, TypeVar
from uuid import UUID

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from starlette.requests import HTTPConnection
from starlette.routing import BaseRoute
from starlette.types import Scope

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
from bastion.errors import (
    CSRFError,
    InsufficientAuthenticationError,
    InvalidTokenError,
    NotFoundError,
    PermissionDeniedError,
)
from bastion.events import EventLog, RequestContext
from bastion.fastapi.auth_result import GuardResult, guard_result, record_decision
from bastion.fastapi.middleware.csrf import SAFE_METHODS
from bastion.fastapi.middleware.rate_limit import CREDENTIAL_CLASSES, client_ip_of, method_class
from bastion.fastapi.routes import RATE_ATTRIBUTE, REQUIREMENT_ATTRIBUTE, RouteTable
from bastion.fastapi.transports import CookieTransport
from bastion.net import TrustedProxies
from bastion.throttle import Check, Limiter, Policy
from bastion.tokens import ExternalAccessClaims

__all__ = ["Authorized", "Guard", "ObjectResolver", "Resolved"]


class _SignedIn(OAuth2PasswordBearer):
    """A signed-in route's dependency: hands the route what the guard published.

    It is the OAuth2 bearer scheme (the OpenAPI document shows it on the route), but it
    reads no header itself: the guard's middleware read the credential once, through
    its transport, and authenticated it before the route was reached.
    """

    def __init__(self, check: Callable[[Request], Awaitable[Any]]) -> None:
        super().__init__(
            tokenUrl="/auth/token", auto_error=False, scheme_name="OAuth2PasswordBearer"
        )
        self._check = check

    async def __call__(self, request: Request) -> Any:  # type: ignore[override]
        return await self._check(request)


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


_SECOND_FACTORS = frozenset({"otp", "rec", "mfa"})


def _second_factor(principal: Principal) -> bool:
    """Whether the caller's sign-in included a second factor (an external issuer's
    principal is the issuer's to check)."""
    claims = principal.claims
    return isinstance(claims, ExternalAccessClaims) or bool(_SECOND_FACTORS & set(claims.amr))


def _declared(requirement: Requirement, call: Any, rate: str | None = None) -> Any:
    setattr(call, REQUIREMENT_ATTRIBUTE, requirement)
    if rate is not None:
        setattr(call, RATE_ATTRIBUTE, rate)
    return Depends(call)


def _counted(decision: Decision, remaining: int | None) -> Decision:
    """``decision`` with the requests the caller has left: an explicit copy, as
    dataclasses.replace reads the fields anew on every call (and this runs on every
    request); ``_DECISION_FIELDS`` fails the import should Decision gain a field."""
    d = decision
    return Decision(
        d.status,
        d.reason,
        d.user_id,
        d.role,
        d.permissions_checked,
        remaining,
        d.warnings,
        d.http_status,
    )


_DECISION_FIELDS = (
    "status",
    "reason",
    "user_id",
    "role",
    "permissions_checked",
    "rate_limit_remaining",
    "warnings",
    "http_status",
)
if tuple(f.name for f in dataclasses.fields(Decision)) != _DECISION_FIELDS:
    raise ImportError("Decision's fields changed: update _counted()")


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
        step_up_max_age: int = 300,
        mfa_roles: frozenset[str] = frozenset(),
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
        self.step_up_max_age = step_up_max_age
        # Roles whose callers must have signed in with a second factor; without one,
        # only the routes of its enrolment (``enrolment=True``) answer them.
        self.mfa_roles = mfa_roles
        self.table = RouteTable()
        self._explained = RouteTable()

    def context(self, request: HTTPConnection) -> RequestContext:
        """Where a request happened, for its events."""
        return RequestContext(
            ip_address=client_ip_of(request.scope, self.proxies),
            endpoint=request.url.path,
            method=request.scope["method"],
            request_id=request.scope.get("state", {}).get("request_id"),
        )

    # -- declarations ------------------------------------------------------------------

    def public(self, note: str, *, rate: str | None = None) -> Any:
        """Anyone may call the route; ``note`` says why (it shows in the route table).

        ``rate`` names the route's rate-limit class (a policy such as ``login-ip``)
        when it is not the one its method implies (reads, writes, deletes)."""
        requirement = Requirement.public(note)

        async def public_route(request: Request) -> None:
            self._published(request, requirement)

        return _declared(requirement, public_route, rate)

    def authenticated(
        self, *, without_role: bool = False, step_up: bool = False, enrolment: bool = False
    ) -> Any:
        """Any signed-in, active account; the route acts on the caller's own data only.

        ``without_role`` lets in a caller whose role is none of the service's too: an
        external issuer's token whose role claim maps to no role (resource-server mode)
        is signed in, and may call only such routes (``GET /users/me``). ``step_up``:
        the caller must have signed in within the step-up age (a sensitive operation;
        else 401 ``insufficient-user-authentication``, RFC 9470). ``enrolment``: a caller
        whose role requires a second factor and who signed in without one may call it
        (the routes that enrol one, sign out, or show the caller)."""
        return self._signed_in(
            Requirement.authenticated(
                without_role=without_role, step_up=step_up, enrolment=enrolment
            )
        )

    def require(self, *permissions: Permission, step_up: bool = False) -> Any:
        """The caller's current role must hold every permission in ``permissions``;
        ``step_up`` as for :meth:`authenticated`."""
        return self._signed_in(Requirement.permission(*permissions, step_up=step_up))

    def _signed_in(self, requirement: Requirement) -> Any:
        async def signed_in(request: Request) -> Principal:
            return self._principal(request, requirement)

        return _declared(requirement, _SignedIn(signed_in))

    def require_object(self, rule: ObjectRule, resolver: ObjectResolver[Any]) -> Any:
        """The role must hold ``rule.permission`` and the caller's relation to the object
        of the path must satisfy ``rule``; the route receives :class:`Authorized`."""
        requirement = Requirement.permission(rule=rule, resolver=resolver)

        async def object_permitted(request: Request) -> Authorized[Any]:
            principal = self._principal(request, requirement)
            decision, found = await self._decide_object(
                rule, resolver, principal.subject, request.path_params
            )
            self.enforce(request, decision, quiet=not found.exists)
            return Authorized(principal, found.resource, decision)

        return _declared(requirement, _SignedIn(object_permitted))

    def _published(self, request: Request, requirement: Requirement) -> GuardResult:
        """The guard's result for this very route, which decided this very declaration.
        Without one the guard did not run (its middleware is missing), and nothing is
        served (fail closed); a result for another route, or one that did not decide
        ``requirement``, is refused."""
        result = guard_result(request)
        if result is None:
            raise RuntimeError("the guard's middleware is not installed in front of this app")
        entry = result.route
        if (
            entry is None
            or entry.route is not request.scope.get("route")
            or requirement not in entry.requirements
        ):
            # The guard matched another route than the router: decide nothing on it.
            self.enforce(request, decide_route(None, None, self.roles))
        return result

    def _principal(self, request: Request, requirement: Requirement) -> Principal:
        principal = self._published(request, requirement).principal
        if principal is None:
            raise RuntimeError("a signed-in route was reached without a principal")
        return principal

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

    async def authorize(self, scope: Scope) -> None:
        """Decide the request of ``scope`` on its published result (the route it
        reaches, its credential, its rate-limit verdict): authenticate it where the
        route needs a signed-in caller, check a cookie session's CSRF token, decide on
        the route's requirement, and publish the principal and the decision.

        Raises:
            BastionError: the refusal to answer (401, 403, or 503 while a store the
                check needs does not answer).
        """
        result = guard_result(scope)
        if result is None or result.route is None:
            raise RuntimeError("authorize() needs the guard's route match in scope['auth']")
        requirement = result.route.requirement
        if requirement is None or requirement.kind == "public":
            # A public route does not look at a token: a bad one is not refused here.
            self.enforce(scope, decide_route(requirement, None, self.roles))
            return
        principal = await self._authenticate(scope, result)
        scope["auth"] = result._signed_in(principal)
        declarations = result.route.requirements or (requirement,)
        if (
            principal.role in self.mfa_roles
            and not _second_factor(principal)
            and not all(d.enrolment for d in declarations)
        ):
            self.enforce(scope, self._enrol_first(principal))
        # Every declaration of the route must hold (a router's and the route's own).
        for declared in declarations:
            decision = decide_route(declared, principal.subject, self.roles)
            if declared.step_up and decision.allowed:
                decision = self._step_up(scope, decision, principal)
            self.enforce(scope, decision)
            if not decision.allowed:
                return

    @staticmethod
    def _enrol_first(principal: Principal) -> Decision:
        return Decision(
            "deny",
            f"role {principal.role!r} needs a second factor: enrol one "
            "(POST /auth/mfa/totp/setup), then sign in with it",
            str(principal.user_id),
            principal.role,
            http_status=403,
        )

    def _step_up(self, scope: Scope, decision: Decision, principal: Principal) -> Decision:
        """``decision`` of a step-up route, with how long ago the caller signed in; a
        sign-in older than the step-up age is refused (401, RFC 9470), and said so."""
        age = int(self.service.clock.now().timestamp()) - principal.claims.auth_time
        limit = self.step_up_max_age
        if 0 <= age <= limit:
            return dataclasses.replace(
                decision, reason=f"{decision.reason}; step-up: signed in {age} s ago"
            )
        refused = dataclasses.replace(
            decision,
            status="deny",
            reason=f"step-up required: signed in {age} s ago, more than {limit}",
            http_status=401,
        )
        record_decision(scope, refused)
        self.events.emit_soon(
            "step_up_required",
            context=self.context(HTTPConnection(scope)),
            user_id=str(principal.user_id),
            details=refused.reason,
            decision=refused.to_dict(),
        )
        raise InsufficientAuthenticationError(refused.reason, max_age=limit)

    async def _authenticate(self, scope: Scope, result: GuardResult) -> Principal:
        credential = result.credential
        try:
            if credential is None:
                raise InvalidTokenError("no bearer token")
            if credential.issuer is not None and credential.claims is None:
                raise InvalidTokenError(credential.refusal or "not verified")
            # The claims and revocation state were read for this very token, this request.
            principal = await self.service.authenticator.authenticate(
                credential.token, verified=credential.claims, revocation=credential.revocation
            )
        except InvalidTokenError as exc:
            record_decision(scope, Decision("deny", "no valid access token", http_status=401))
            of = f" of issuer {credential.issuer}" if credential and credential.issuer else ""
            self.events.emit_soon(
                "auth_failure",
                context=self.context(HTTPConnection(scope)),
                details=f"access token{of} refused ({exc.reason})",
            )
            raise
        if result.from_cookie and scope["method"] not in SAFE_METHODS:
            self._check_csrf(scope, principal)
        return principal

    def _check_csrf(self, scope: Scope, principal: Principal) -> None:
        """A cookie session's state-changing request carries the CSRF token signed for
        that very session (OWASP "Signed Double-Submit Cookie"): a token of another
        session, or none, is refused."""
        assert self.cookies is not None
        connection = HTTPConnection(scope)
        if self.cookies.csrf_valid(connection, principal.session_id):
            return
        decision = Decision(
            "deny",
            "CSRF token missing or not this session's",
            str(principal.user_id),
            principal.role,
            http_status=403,
        )
        record_decision(scope, decision)
        reason = "token missing or not signed for this session"
        self.log_csrf_refusal(connection, reason, user_id=str(principal.user_id))
        raise CSRFError(f"CSRF {reason}")

    def log_csrf_refusal(
        self, request: HTTPConnection, reason: str, user_id: str | None = None
    ) -> None:
        """One ``suspicious_activity`` event (OWASP ``malicious_csrf``) for a refusal."""
        self.events.emit_soon(
            "suspicious_activity",
            context=self.context(request),
            user_id=user_id,
            details=f"CSRF refused: {reason}",
            severity="high",
            category="malicious_csrf",
        )

    def enforce(
        self, request: HTTPConnection | Scope, decision: Decision, *, quiet: bool = False
    ) -> None:
        """Publish ``decision``; on deny, log ``permission_denied`` (unless ``quiet``: a
        missing object is no attack) and raise the error the decision's status names."""
        scope = request.scope if isinstance(request, HTTPConnection) else request
        result = guard_result(scope)
        verdict = result.rate_limit if result is not None else None
        if verdict is not None and decision.rate_limit_remaining is None:
            decision = _counted(decision, verdict.remaining)
        record_decision(scope, decision)
        if decision.allowed:
            return
        if not quiet:
            # Written after the response: a hidden object answers as fast as a missing one.
            self.events.emit_soon(
                "permission_denied",
                context=self.context(HTTPConnection(scope)),
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

    # -- explanation -------------------------------------------------------------------

    async def explain(
        self, routes: Iterable[BaseRoute], user_id: UUID, method: str, path: str
    ) -> Decision:
        """What the guard would decide for ``user_id`` calling ``method path``, and why.

        Uses the stored role and state of the user (not a token), and for object routes
        the same resolver as the route, so the answer is the route's own.
        """
        subject = await self.service.admin.subject(user_id)
        live = routes if isinstance(routes, list) else list(routes)  # the app's: compiled
        # A table of its own: the middleware's follows the app's router, this one a list.
        entry, params, status = self._explained.match(live, method, path)
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
        for declared in entry.requirements:
            if decision.allowed:
                decision = decide_route(declared, subject, self.roles)
        objects = [r for r in entry.requirements if r.rule is not None]
        rule = objects[0].rule if objects else None
        resolver = objects[0].resolver if objects else None
        if decision.allowed and rule is not None and resolver is not None:
            decision, _ = await self._decide_object(rule, resolver, subject, params)
        if decision.allowed and any(r.step_up for r in entry.requirements):
            age = self.step_up_max_age
            decision = dataclasses.replace(
                decision, reason=f"{decision.reason}; step-up: a sign-in within {age} s"
            )
        remaining = await self._remaining(user_id, entry.rate or method_class(method))
        return _counted(decision, remaining)

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
