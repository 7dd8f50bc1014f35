"""The thin FastAPI layer over the security core: the only package that imports FastAPI."""

from bastion.fastapi.dependencies import Guard
from bastion.fastapi.middleware import BodyLimitMiddleware, RequestContextMiddleware
from bastion.fastapi.problems import (
    PROBLEM_JSON,
    install_problem_handlers,
    problem,
    validation_problem,
)
from bastion.fastapi.routers import auth_router, jwks_router, users_router
from bastion.fastapi.schemas import SafeText, safe_text

__all__ = [
    "PROBLEM_JSON",
    "BodyLimitMiddleware",
    "Guard",
    "RequestContextMiddleware",
    "SafeText",
    "auth_router",
    "install_problem_handlers",
    "jwks_router",
    "problem",
    "safe_text",
    "users_router",
    "validation_problem",
]
