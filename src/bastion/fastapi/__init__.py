"""The thin FastAPI layer over the security core: the only package that imports FastAPI."""

from bastion.fastapi.dependencies import Authorized, Guard, ObjectResolver, Resolved
from bastion.fastapi.media_types import require_declared_media_type
from bastion.fastapi.middleware import (
    AllowedHostsMiddleware,
    BodyLimitMiddleware,
    CORSMiddleware,
    CSRFMiddleware,
    InputEventsMiddleware,
    JSONLimitMiddleware,
    MetricsMiddleware,
    RateLimitMiddleware,
    RequestContextMiddleware,
    RequestLimitsMiddleware,
)
from bastion.fastapi.openapi import install_problem_schema
from bastion.fastapi.problems import (
    PROBLEM_JSON,
    install_problem_handlers,
    problem,
    validation_problem,
)
from bastion.fastapi.routers import (
    LINK_PAGE_PATHS,
    account_router,
    admin_router,
    auth_router,
    docs_router,
    jwks_router,
    metrics_router,
    users_router,
)
from bastion.fastapi.routes import RouteEntry, match_route, requirement_of, route_table
from bastion.fastapi.schemas import RFC3339Time, SafeText, safe_text
from bastion.fastapi.transports import CookieTransport

__all__ = [
    "LINK_PAGE_PATHS",
    "PROBLEM_JSON",
    "AllowedHostsMiddleware",
    "Authorized",
    "BodyLimitMiddleware",
    "CORSMiddleware",
    "CSRFMiddleware",
    "CookieTransport",
    "Guard",
    "InputEventsMiddleware",
    "JSONLimitMiddleware",
    "MetricsMiddleware",
    "ObjectResolver",
    "RFC3339Time",
    "RateLimitMiddleware",
    "RequestContextMiddleware",
    "RequestLimitsMiddleware",
    "Resolved",
    "RouteEntry",
    "SafeText",
    "account_router",
    "admin_router",
    "auth_router",
    "docs_router",
    "install_problem_handlers",
    "install_problem_schema",
    "jwks_router",
    "match_route",
    "metrics_router",
    "problem",
    "require_declared_media_type",
    "requirement_of",
    "route_table",
    "safe_text",
    "users_router",
    "validation_problem",
]
