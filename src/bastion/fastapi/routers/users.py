"""``/users/me``: the caller's own account."""

# No ``from __future__ import annotations`` here: FastAPI must resolve the local
# ``Authenticated`` alias of each factory at definition time.

from typing import Annotated, Any

from fastapi import APIRouter

from bastion.accounts import Principal
from bastion.errors import InvalidTokenError
from bastion.fastapi.dependencies import Guard
from bastion.fastapi.schemas import UserOut, UserPatch
from bastion.tokens import ExternalAccessClaims

__all__ = ["users_router"]


def users_router(guard: Guard) -> APIRouter:
    router = APIRouter(prefix="/users", tags=["users"])
    Authenticated = Annotated[Principal, guard.authenticated()]
    errors: dict[int | str, dict[str, Any]] = {401: {"description": "Invalid token"}}

    # Any signed-in caller, an external token whose role claim maps to no role included.
    Identified = Annotated[Principal, guard.authenticated(without_role=True, enrolment=True)]

    @router.get("/me", response_model=UserOut, summary="The caller's account", responses=errors)
    async def me(principal: Identified) -> UserOut:
        """An external issuer's principal (resource-server mode) sees its token's role
        (``none`` when its role claim maps to none) and email claim."""
        account = await guard.service.admin.get_account(principal.user_id)
        if account is None:
            raise InvalidTokenError("unknown subject")
        out = UserOut.model_validate(account)
        claims = principal.claims
        if isinstance(claims, ExternalAccessClaims):
            shown = {"role": principal.role, "email": claims.email or out.email}
            return out.model_copy(update=shown)
        return out

    @router.patch(
        "/me",
        response_model=UserOut,
        summary="Change the caller's display name",
        responses={**errors, 422: {"description": "Unknown or forbidden field"}},
    )
    async def patch_me(body: UserPatch, principal: Authenticated) -> UserOut:
        account = await guard.service.admin.update_profile(
            principal.user_id, display_name=body.display_name
        )
        return UserOut.model_validate(account)

    return router
