"""``create_app(settings)``: the Bastion task service, assembled from the public security API."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from starlette.responses import JSONResponse

from bastion.clock import Clock
from bastion.config import Settings
from bastion.errors import DatabaseUnavailableError
from bastion.fastapi import (
    LINK_PAGE_PATHS,
    AllowedHostsMiddleware,
    BodyLimitMiddleware,
    CookieTransport,
    CORSMiddleware,
    CSRFMiddleware,
    Guard,
    InputEventsMiddleware,
    JSONLimitMiddleware,
    MetricsMiddleware,
    RateLimitMiddleware,
    RequestContextMiddleware,
    RequestLimitsMiddleware,
    account_router,
    admin_router,
    auth_router,
    docs_router,
    install_problem_handlers,
    install_problem_schema,
    jwks_router,
    metrics_router,
    problem,
    require_declared_media_type,
    users_router,
)
from bastion.metrics import Metrics
from bastion.net import TrustedProxies
from bastion.runtime import Security, open_security
from bastion.stores.sql import ping
from bastion.tokens import CSRFTokens
from bastion_tasks.attachment_service import attachment_service
from bastion_tasks.attachments import attachment_body_limits, attachments_router
from bastion_tasks.routes import tasks_router
from bastion_tasks.services import TaskService

__all__ = ["create_app", "create_app_from_env"]

_logger = logging.getLogger("bastion_tasks")


def create_app(settings: Settings | None = None, *, clock: Clock | None = None) -> FastAPI:
    """Build the service; raises ConfigurationError on an insecure production setting."""
    settings = settings or Settings()
    security = open_security(settings, clock=clock)
    engine = security.stores.engine
    if engine is None:
        raise ValueError("the task service needs a SQL database (BASTION_DATABASE_URL)")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await security.start()
            yield
        finally:
            await security.aclose()

    docs = settings.docs_mode  # "off": no docs routes at all
    cookies = CookieTransport(
        CSRFTokens(security.keys.derive_secret("bastion csrf")),
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
    )
    title = "Bastion task service"
    app = FastAPI(
        title=title,
        version="0.1.0",
        lifespan=lifespan,
        debug=False,
        # The docs routes come from docs_router, declared like every other route.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=[Depends(_route_checks(guard))],
    )
    # An exact path or nothing: no redirect from /tasks/ to /tasks (nor any other).
    app.router.redirect_slashes = False
    app.state.security = security
    app.state.guard = guard
    install_problem_handlers(app)
    install_problem_schema(app)  # /openapi.json documents every error as a problem

    tasks = TaskService(engine, clock=clock)
    # A share with an address that had no account waits until the address is verified.
    security.lifecycle.on_email_verified(tasks.activate_pending_shares)
    app.include_router(
        auth_router(guard, security.lifecycle, secure_cookies=settings.cookie_secure)
    )
    app.include_router(account_router(guard, security.lifecycle))
    app.include_router(jwks_router(guard, security.keys))
    app.include_router(users_router(guard))
    app.include_router(tasks_router(guard, tasks))
    attachments = attachment_service(settings, engine, clock=clock)
    tasks.on_delete(attachments.on_task_delete)  # a deleted task's files go with it
    app.state.attachments = attachments
    app.include_router(attachments_router(guard, tasks, attachments))
    app.include_router(admin_router(guard))
    if docs != "off":
        app.include_router(docs_router(guard, title=title, access=docs))
    _add_operations(app, guard, security)
    metrics = _add_metrics(app, guard, security)

    # Outermost last: metrics, request id and headers, allowed hosts, CORS, rate limits,
    # CSRF, input events, time and header caps, body cap, JSON shape; the body cap and
    # the JSON shape run before any route parses the body.
    app.add_middleware(
        JSONLimitMiddleware, max_depth=settings.max_json_depth, max_items=settings.max_json_items
    )
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        overrides=attachment_body_limits(attachments.policy),  # the upload route only
    )
    app.add_middleware(
        RequestLimitsMiddleware,
        max_header_bytes=settings.max_header_bytes,
        timeout=settings.request_timeout_seconds,
    )
    # Refused input on the auth routes, each logged once (input_validation_failed).
    app.add_middleware(InputEventsMiddleware, events=security.events, proxies=guard.proxies)
    app.add_middleware(
        CSRFMiddleware,
        transport=cookies,
        events=security.events,
        proxies=guard.proxies,
        trusted_origins=[settings.public_url, *(o for o in settings.cors_origins if o != "*")],
    )
    if settings.rate_limit_enabled:
        app.add_middleware(
            RateLimitMiddleware,
            limiter=security.limiter,
            policies=security.policies,
            proxies=guard.proxies,
            events=security.events,
            verify_token=security.access_tokens.verify,
            fail_closed=settings.rate_limit_on_store_failure == "fail-closed",
            access_cookie=cookies.names.access,
            on_blocked=metrics.count_blocked if metrics else None,
            revocation_reads=security.revocation_reads,
        )
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, origins=settings.cors_origins)
    if settings.hosts:
        app.add_middleware(AllowedHostsMiddleware, hosts=settings.hosts)
    app.add_middleware(
        RequestContextMiddleware,
        docs_paths=("/docs", "/redoc") if docs != "off" else (),
        page_paths=LINK_PAGE_PATHS,
        hsts=settings.is_production,
    )
    if metrics is not None:  # outside the request context: it sees the final status
        app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def _route_checks(guard: Guard) -> Callable[[Request], Awaitable[None]]:
    """The app-wide dependency, one for both checks (each dependency costs a solve per
    request): a body of a type the route does not take is a 415; deny by default: a
    route that declares no requirement refuses every request."""

    async def route_checks(request: Request) -> None:
        await require_declared_media_type(request)
        await guard.gate(request)

    return route_checks


def _add_metrics(app: FastAPI, guard: Guard, security: Security) -> Metrics | None:
    """Count into this app's own registry and serve it at /metrics, unless the settings
    turn metrics off (or production has no token for them: docs/metrics.md)."""
    settings = security.settings
    if settings.metrics_access == "off":
        return None
    metrics = Metrics(policies=security.policies)
    metrics.watch_events(security.events)
    metrics.watch_hasher(security.hasher)
    token = settings.metrics_token if settings.metrics_access == "token" else None
    app.include_router(
        metrics_router(guard, metrics, token=token.get_secret_value() if token else None)
    )
    app.state.metrics = metrics
    return metrics


def _add_operations(app: FastAPI, guard: Guard, security: Security) -> None:
    probe = [guard.public("liveness and readiness probes")]

    @app.get("/healthz", tags=["operations"], summary="The process is up", dependencies=probe)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="The database (and Redis) answer",
        responses={503: {"description": "A dependency does not answer"}},
        dependencies=probe,
    )
    async def readyz(request: Request) -> Any:
        checks: dict[str, str] = {}
        try:
            assert security.stores.engine is not None
            await ping(security.stores.engine)
            checks["database"] = "ok"
        except DatabaseUnavailableError:  # the engine logs the outage, once
            checks["database"] = "unavailable"
        except Exception:
            _logger.exception("readiness: database")
            checks["database"] = "unavailable"
        try:
            checks["revocation_store"] = (
                "ok" if await security.stores.revocation.ping() else "unavailable"
            )
        except Exception as exc:  # a Redis that does not answer: no traceback per probe
            _logger.warning("readiness: revocation store: %s", type(exc).__name__)
            checks["revocation_store"] = "unavailable"
        if all(value == "ok" for value in checks.values()):
            return JSONResponse({"status": "ok", "checks": checks})
        down = ", ".join(name for name, value in checks.items() if value != "ok")
        return problem(
            request,
            503,
            "service-unavailable",
            "Service unavailable",
            f"Not ready: {down.replace('_', ' ')} unavailable.",
            headers={"Retry-After": "5"},
            checks=checks,
        )


def create_app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory``: settings from the environment."""
    return create_app(Settings())
