"""Small pure-ASGI middlewares, one a module."""

from bastion.fastapi.middleware.body_limit import BodyLimitMiddleware
from bastion.fastapi.middleware.rate_limit import RateLimitMiddleware
from bastion.fastapi.middleware.request_context import RequestContextMiddleware

__all__ = ["BodyLimitMiddleware", "RateLimitMiddleware", "RequestContextMiddleware"]
