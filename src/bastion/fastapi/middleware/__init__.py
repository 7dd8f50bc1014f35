"""Small pure-ASGI middlewares, one a module."""

from bastion.fastapi.middleware.body_limit import BodyLimitMiddleware
from bastion.fastapi.middleware.rate_limit import RateLimitMiddleware
from bastion.fastapi.middleware.request_context import RequestContextMiddleware
from bastion.fastapi.middleware.request_limits import (
    JSONLimitMiddleware,
    RequestLimitsMiddleware,
)

__all__ = [
    "BodyLimitMiddleware",
    "JSONLimitMiddleware",
    "RateLimitMiddleware",
    "RequestContextMiddleware",
    "RequestLimitsMiddleware",
]
