"""The thin FastAPI layer over the security core: the only package that imports FastAPI.

``install(app)`` puts the whole guard in front of an app (docs/quickstart.md); the
names here are what a route author and an integrator use. The middleware and the
router factories stay importable from :mod:`bastion.fastapi.middleware` and
:mod:`bastion.fastapi.routers` for an app that assembles its own stack.
"""

from bastion.fastapi.auth_result import GuardResult, guard_result
from bastion.fastapi.dependencies import Authorized, Guard, ObjectResolver, Resolved
from bastion.fastapi.guard_middleware import GuardMiddleware
from bastion.fastapi.install import ROUTERS, Bastion, RouterName, install
from bastion.fastapi.problems import PROBLEM_JSON, problem, validation_problem
from bastion.fastapi.routes import RouteEntry, match_route, route_table
from bastion.fastapi.schemas import RFC3339Time, SafeText, safe_text
from bastion.fastapi.transports import CookieTransport

__all__ = [
    "PROBLEM_JSON",
    "ROUTERS",
    "Authorized",
    "Bastion",
    "CookieTransport",
    "Guard",
    "GuardMiddleware",
    "GuardResult",
    "ObjectResolver",
    "RFC3339Time",
    "Resolved",
    "RouteEntry",
    "RouterName",
    "SafeText",
    "guard_result",
    "install",
    "match_route",
    "problem",
    "route_table",
    "safe_text",
    "validation_problem",
]
