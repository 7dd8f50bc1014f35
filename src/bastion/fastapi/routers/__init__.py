"""Router factories: each takes its dependencies and returns an APIRouter."""

from bastion.fastapi.routers.auth import auth_router, jwks_router
from bastion.fastapi.routers.users import users_router

__all__ = ["auth_router", "jwks_router", "users_router"]
