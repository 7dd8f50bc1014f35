"""``install(app)``: put the whole guard in front of a FastAPI app, in its one correct order.

A library user writes::

    app = FastAPI()
    bastion = install(app)

    @app.get("/me")
    async def me(user: Annotated[Principal, bastion.authenticated()]) -> dict[str, str]: ...

and gets, from the settings (``BASTION_*`` variables, or a ``BastionSettings``): the problem
handlers, the middleware stack (request id and security headers, allowed hosts, CORS, rate
limits, CSRF, input events, time/header/body caps, JSON shape), deny-by-default for every
route that declares nothing, and the routers asked for (register, login, sessions, JWKS,
admin, docs, metrics, probes) under an optional path prefix. The embedded default needs no
setting: SQLite in ``./var``, in-process stores, development keys, and in development the
core's tables migrated on start.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Collection, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import FastAPI
from starlette.routing import Route

from bastion.authz import ROLE_ORDER, ObjectRule, Permission
from bastion.clock import Clock
from bastion.config import BastionSettings
from bastion.fastapi.dependencies import Guard, ObjectResolver
from bastion.fastapi.guard_middleware import GuardMiddleware
from bastion.fastapi.middleware import (
    AllowedHostsMiddleware,
    BodyLimitMiddleware,
    CORSMiddleware,
    CSRFCheck,
    InputEventsMiddleware,
    JSONLimitMiddleware,
    MetricsMiddleware,
    RateLimits,
    RequestContextMiddleware,
    RequestLimitsMiddleware,
)
from bastion.fastapi.openapi import install_problem_schema
from bastion.fastapi.problems import install_problem_handlers
from bastion.fastapi.routers import (
    LINK_PAGE_PATHS,
    account_router,
    admin_router,
    auth_router,
    docs_router,
    jwks_router,
    metrics_router,
    oauth_router,
    operations_router,
    users_router,
)
from bastion.fastapi.transports import CookieTransport
from bastion.metrics import Metrics
from bastion.net import TrustedProxies
from bastion.runtime import Security, open_security
from bastion.tokens import CSRFTokens, purposes

__all__ = ["ROUTERS", "Bastion", "RouterName", "install"]

_logger = logging.getLogger("bastion")

RouterName = Literal["auth", "account", "users", "jwks", "admin", "docs", "metrics", "operations"]
ROUTERS: tuple[RouterName, ...] = (
    "auth",
    "account",
    "users",
    "jwks",
    "admin",
    "docs",
    "metrics",
    "operations",
)
"""Every router :func:`install` can add; the default is all of them (``docs`` and
``metrics`` as the settings allow: ``BASTION_DOCS_ACCESS``, ``BASTION_METRICS_ACCESS``)."""

# FastAPI's own documentation routes: unguarded, and their pages load scripts from a CDN.
_FASTAPI_DOCS = ("openapi_url", "docs_url", "redoc_url", "swagger_ui_oauth2_redirect_url")


@dataclass(frozen=True)
class Bastion:
    """What :func:`install` put in front of an app: the route declarations, and the core.

    Every route declares who may call it with one of :meth:`public`,
    :meth:`authenticated`, :meth:`require` or :meth:`require_object`; a route that
    declares nothing is refused (deny by default).
    """

    settings: BastionSettings
    security: Security
    guard: Guard
    cookies: CookieTransport
    metrics: Metrics | None

    def public(self, note: str, *, rate: str | None = None) -> Any:
        """Anyone may call the route; ``note`` says why. ``rate`` names its rate-limit
        class (a policy such as ``login-ip``) when not the one its method implies."""
        return self.guard.public(note, rate=rate)

    def authenticated(self, *, without_role: bool = False, step_up: bool = False) -> Any:
        """Any signed-in, active account; the route receives its ``Principal``.
        ``without_role``: an external issuer's principal whose role claim maps to no
        role may call it too; ``step_up``: only after a recent sign-in (see
        ``Guard.authenticated``)."""
        return self.guard.authenticated(without_role=without_role, step_up=step_up)

    def require(self, *permissions: Permission, step_up: bool = False) -> Any:
        """The caller's role must hold every permission; the route receives its
        ``Principal``; ``step_up``: only after a recent sign-in."""
        return self.guard.require(*permissions, step_up=step_up)

    def require_object(self, rule: ObjectRule, resolver: ObjectResolver[Any]) -> Any:
        """The role's permission and the caller's relation to the path's object; the route
        receives ``Authorized`` (principal, object, decision)."""
        return self.guard.require_object(rule, resolver)


_MFA_ROLES = {
    "off": frozenset[str](),
    "admins": frozenset({"admin"}),
    "everyone": frozenset(ROLE_ORDER),
}


def install(
    app: FastAPI,
    settings: BastionSettings | None = None,
    *,
    routers: Collection[RouterName] = ROUTERS,
    prefix: str = "",
    clock: Clock | None = None,
    migrate: bool | None = None,
    body_limits: Mapping[tuple[str, str], int] | None = None,
) -> Bastion:
    """Put Bastion in front of ``app`` and return the handle its routes declare with.

    ``settings`` default to the environment (``BASTION_*``); production refuses to start on
    an insecure one (:class:`~bastion.errors.ConfigurationError` names it). ``routers``
    picks Bastion's own routes (:data:`ROUTERS`), each under ``prefix`` (e.g. ``/api``:
    ``/api/auth/login``). ``migrate``: bring the core's tables up to date when the app
    starts; by default in development only (production runs ``bastion migrate``).
    ``body_limits`` gives single routes, by ``(method, path template)``, a body cap of
    their own (an upload route). Call it once, before the app serves.
    """
    if getattr(app.state, "bastion", None) is not None:
        raise RuntimeError("Bastion is already installed on this app")
    unknown = set(routers) - set(ROUTERS)
    if unknown:
        raise ValueError(f"unknown routers: {', '.join(sorted(unknown))}")
    if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
        raise ValueError("prefix must start with '/' and not end with it, e.g. '/api'")
    settings = settings or BastionSettings()
    security = open_security(settings, clock=clock, path_prefix=prefix)
    cookies = CookieTransport(
        CSRFTokens(security.keys.derive_secret(purposes.CSRF)),
        secure=settings.cookie_secure,
        session_max_age=settings.refresh_absolute_ttl_seconds,
    )
    guard = Guard(
        security.accounts,
        security.events,
        TrustedProxies(settings.trusted_proxies, header=settings.forwarded_header),
        roles=settings.roles,
        limits=(security.limiter, security.policies) if settings.rate_limit_enabled else None,
        cookies=cookies,
        step_up_max_age=settings.step_up_max_age_seconds,
        mfa_roles=_MFA_ROLES[settings.mfa_required],
    )
    _remove_fastapi_docs(app)
    # Exact paths only: no redirect from /tasks/ to /tasks (nor any other).
    app.router.redirect_slashes = False
    install_problem_handlers(app)
    install_problem_schema(app)  # /openapi.json documents every error as a problem
    metrics = _include_routers(app, guard, security, cookies, set(routers), prefix)
    bastion = Bastion(settings, security, guard, cookies, metrics)
    app.state.bastion = bastion
    app.state.security = security
    app.state.guard = guard
    _add_middleware(app, bastion, prefix, body_limits or {})
    _wrap_lifespan(app, security, migrate if migrate is not None else not settings.is_production)
    if security.oauth is not None:
        _keep_callback_queries_out_of_access_logs()
    return bastion


class _NoCallbackQueries(logging.Filter):
    """uvicorn's access log writes each request line with its query string; a sign-in's
    callback carries the provider's code and state there, which are not to be logged."""

    _CALLBACK = re.compile(r"(/auth/oauth/[^/?]+/callback)\?\S*")

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            path = self._CALLBACK.sub(r"\1?[query not logged]", args[2])
            record.args = (*args[:2], path, *args[3:])
        return True


def _keep_callback_queries_out_of_access_logs() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, _NoCallbackQueries) for f in access.filters):
        access.addFilter(_NoCallbackQueries())


def _remove_fastapi_docs(app: FastAPI) -> None:
    """Drop FastAPI's built-in documentation routes: Bastion's docs router serves the same
    pages from packaged assets, declared like every other route."""
    paths = {getattr(app, name) for name in _FASTAPI_DOCS if getattr(app, name, None)}
    app.router.routes[:] = [
        route for route in app.router.routes if not (type(route) is Route and route.path in paths)
    ]
    for name in _FASTAPI_DOCS:
        setattr(app, name, None)


def _include_routers(
    app: FastAPI,
    guard: Guard,
    security: Security,
    cookies: CookieTransport,
    wanted: set[RouterName],
    prefix: str,
) -> Metrics | None:
    settings = security.settings
    if "auth" in wanted:
        router = auth_router(guard, security.lifecycle, secure_cookies=settings.cookie_secure)
        app.include_router(router, prefix=prefix)
        if security.oauth is not None:  # BASTION_OAUTH_PROVIDERS
            oauth = oauth_router(guard, security, secure_cookies=settings.cookie_secure)
            app.include_router(oauth, prefix=prefix)
    if "account" in wanted:
        app.include_router(account_router(guard, security.lifecycle, prefix=prefix), prefix=prefix)
    if "jwks" in wanted:
        app.include_router(jwks_router(guard, security.keys), prefix=prefix)
    if "users" in wanted:
        app.include_router(users_router(guard), prefix=prefix)
    if "admin" in wanted:
        app.include_router(admin_router(guard), prefix=prefix)
    if "docs" in wanted and settings.docs_mode != "off":
        title = app.title
        app.include_router(docs_router(guard, title=title, access=settings.docs_mode))
    if "operations" in wanted:
        app.include_router(operations_router(guard, security), prefix=prefix)
    if "metrics" not in wanted or settings.metrics_access == "off":
        return None
    metrics = Metrics(policies=security.policies)
    metrics.watch_events(security.events)
    metrics.watch_hasher(security.hasher)
    token = settings.metrics_token if settings.metrics_access == "token" else None
    router = metrics_router(guard, metrics, token=token.get_secret_value() if token else None)
    app.include_router(router, prefix=prefix)
    app.state.metrics = metrics
    return metrics


def _add_middleware(
    app: FastAPI, bastion: Bastion, prefix: str, body_limits: Mapping[tuple[str, str], int]
) -> None:
    """The middleware stack. Added innermost first; a request meets, outermost first:
    metrics, request id and headers, allowed hosts, CORS, the guard (rate limits, CSRF,
    deny by default, authentication, decision), input events, time and header caps, body
    cap and media type, JSON shape; the body cap and the JSON shape run before any route
    parses the body."""
    settings, security, guard = bastion.settings, bastion.security, bastion.guard
    app.add_middleware(
        JSONLimitMiddleware, max_depth=settings.max_json_depth, max_items=settings.max_json_items
    )
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=settings.max_body_bytes, overrides=body_limits
    )
    app.add_middleware(
        RequestLimitsMiddleware,
        max_header_bytes=settings.max_header_bytes,
        timeout=settings.request_timeout_seconds,
    )
    # Refused input on the auth routes, each logged once (input_validation_failed).
    app.add_middleware(InputEventsMiddleware, events=security.events, proxies=guard.proxies)
    # The guard: route match, credential, rate limits, CSRF, deny by default, decision.
    metrics = bastion.metrics
    rate_limits = None
    if settings.rate_limit_enabled:
        rate_limits = RateLimits(
            limiter=security.limiter,
            policies=security.policies,
            events=security.events,
            fail_closed=settings.rate_limit_on_store_failure == "fail-closed",
            on_blocked=metrics.count_blocked if metrics else None,
            revocation_reads=security.revocation_reads,
        )
    csrf = CSRFCheck(
        transport=bastion.cookies,
        events=security.events,
        proxies=guard.proxies,
        trusted_origins=[settings.public_url, *(o for o in settings.cors_origins if o != "*")],
    )
    app.add_middleware(
        GuardMiddleware,
        guard=guard,
        verify_token=security.access_tokens.verify,
        rate_limits=rate_limits,
        csrf=csrf,
        external=security.external,
    )
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, origins=settings.cors_origins)
    if settings.hosts:
        app.add_middleware(AllowedHostsMiddleware, hosts=settings.hosts)
    docs = settings.docs_mode != "off"
    app.add_middleware(
        RequestContextMiddleware,
        docs_paths=("/docs", "/redoc") if docs else (),
        page_paths=tuple(prefix + path for path in LINK_PAGE_PATHS),
        hsts=settings.is_production,
    )
    if bastion.metrics is not None:  # outside the request context: it sees the final status
        app.add_middleware(MetricsMiddleware, metrics=bastion.metrics)


def _wrap_lifespan(app: FastAPI, security: Security, migrate: bool) -> None:
    """Start Bastion before the app's own lifespan and close it after."""
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[Any]:
        try:
            if migrate and security.stores.engine is not None:
                from bastion.migrate import upgrade_connection

                await upgrade_connection(security.stores.engine)
            await security.start()
            async with inner(app) as state:
                yield state
        finally:
            await security.aclose()

    app.router.lifespan_context = lifespan
