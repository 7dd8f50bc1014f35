"""Router factories: each takes its dependencies and returns an APIRouter."""

from bastion.fastapi.routers.account import LINK_PAGE_PATHS, account_router
from bastion.fastapi.routers.admin import admin_router
from bastion.fastapi.routers.auth import auth_router, jwks_router
from bastion.fastapi.routers.docs import docs_router
from bastion.fastapi.routers.metrics import metrics_router
from bastion.fastapi.routers.oauth import oauth_router
from bastion.fastapi.routers.operations import operations_router
from bastion.fastapi.routers.users import users_router

__all__ = [
    "LINK_PAGE_PATHS",
    "account_router",
    "admin_router",
    "auth_router",
    "docs_router",
    "jwks_router",
    "metrics_router",
    "oauth_router",
    "operations_router",
    "users_router",
]
