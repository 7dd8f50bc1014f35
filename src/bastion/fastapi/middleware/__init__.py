"""Small pure-ASGI middlewares, one a module, and the guard's rate-limit and CSRF steps."""

from bastion.fastapi.middleware.body_limit import BodyLimitMiddleware
from bastion.fastapi.middleware.cors import CORSMiddleware
from bastion.fastapi.middleware.csrf import CSRFCheck
from bastion.fastapi.middleware.hosts import AllowedHostsMiddleware
from bastion.fastapi.middleware.input_events import InputEventsMiddleware
from bastion.fastapi.middleware.metrics import MetricsMiddleware
from bastion.fastapi.middleware.rate_limit import RateLimits
from bastion.fastapi.middleware.request_context import RequestContextMiddleware
from bastion.fastapi.middleware.request_limits import (
    JSONLimitMiddleware,
    RequestLimitsMiddleware,
)

__all__ = [
    "AllowedHostsMiddleware",
    "BodyLimitMiddleware",
    "CORSMiddleware",
    "CSRFCheck",
    "InputEventsMiddleware",
    "JSONLimitMiddleware",
    "MetricsMiddleware",
    "RateLimits",
    "RequestContextMiddleware",
    "RequestLimitsMiddleware",
]
