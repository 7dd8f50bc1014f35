"""``/users/me``: the caller's own account."""

# No ``from __future__ import annotations`` here: FastAPI must resolve the local
# ``Authenticated`` alias of each factory at definition time.

from typing import Annotated, Any

from fastapi import APIRouter

from bastion.accounts import Principal
from bastion.errors import InvalidTokenError
from bastion.fastapi.dependencies import Guard
from bastion.fastapi.schemas import UserOut, UserPatch
from bastion.stores import Account

__all__ = ["users_router"]


def _user_out(account: Account) -> UserOut:
    return UserOut(
        id=account.id,
        email=account.email,
        display_name=account.display_name,
        role=account.role,
        email_verified=account.email_verified,
        mfa_enabled=account.mfa_enabled,
        created_at=account.created_at,
    )


def users_router(guard: Guard) -> APIRouter:
    router = APIRouter(prefix="/users", tags=["users"])
    Authenticated = Annotated[Principal, guard.authenticated()]
    errors: dict[int | str, dict[str, Any]] = {401: {"description": "Invalid token"}}

    @router.get("/me", response_model=UserOut, summary="The caller's account", responses=errors)
    async def me(principal: Authenticated) -> UserOut:
        account = await guard.service.get_account(principal.user_id)
        if account is None:
            raise InvalidTokenError("unknown subject")
        return _user_out(account)

    @router.patch(
        "/me",
        response_model=UserOut,
        summary="Change the caller's display name",
        responses={**errors, 422: {"description": "Unknown or forbidden field"}},
    )
    async def patch_me(body: UserPatch, principal: Authenticated) -> UserOut:
        account = await guard.service.update_profile(
            principal.user_id, display_name=body.display_name
        )
        return _user_out(account)

    return router
