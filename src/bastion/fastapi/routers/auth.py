"""The ``/auth`` routes and the JWK set, as a factory that takes its dependencies."""

# No ``from __future__ import annotations`` here: FastAPI must resolve the local
# ``Authenticated`` alias of each factory at definition time.

from typing import Annotated, Any

from fastapi import APIRouter, Body, Form, Request, Response, status

from bastion.accounts import AccountLifecycle, Principal
from bastion.errors import InvalidCredentialsError
from bastion.fastapi.dependencies import Guard
from bastion.fastapi.schemas import (
    LoginIn,
    LogoutIn,
    RefreshIn,
    RegisteredOut,
    RegisterIn,
    TokenPairOut,
)
from bastion.tokens import KeySet

__all__ = ["auth_router", "jwks_router"]

_CREDENTIAL_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {
        "description": (
            "Invalid credentials (the same answer for every reason); with `Retry-After` "
            "while repeated failures make this client wait, with `challenge` (an ALTCHA "
            "proof-of-work challenge, to solve and send back as `altcha`) after many"
        )
    },
    422: {"description": "Validation error"},
    429: {"description": "Too many attempts (quota-exceeded problem, `Retry-After`)"},
    503: {"description": "The password-hashing pool is saturated, or limits are unavailable"},
}
DEVICE_COOKIE = "__Host-bastion-device"
_DEVICE_COOKIE_PLAIN = "bastion-device"  # without Secure, the __Host- prefix is refused


def auth_router(
    guard: Guard, lifecycle: AccountLifecycle, *, secure_cookies: bool = True
) -> APIRouter:
    """``secure_cookies=False`` (development over plain HTTP only) drops ``Secure`` and
    the ``__Host-`` prefix from the device cookie."""
    router = APIRouter(prefix="/auth", tags=["auth"])
    service = guard.service
    Authenticated = Annotated[Principal, guard.authenticated()]
    public_signup = [guard.public("signs an anonymous caller up", rate="register")]
    public_login = [guard.public("signs an anonymous caller in", rate="login-ip")]
    cookie_name = DEVICE_COOKIE if secure_cookies else _DEVICE_COOKIE_PLAIN

    @router.post(
        "/register",
        dependencies=public_signup,
        status_code=status.HTTP_202_ACCEPTED,
        response_model=RegisteredOut,
        summary="Register an account",
        responses={422: {"description": "Invalid email or refused password"}},
    )
    async def register(body: RegisterIn, request: Request) -> Any:
        """202 whether or not the email is already registered: no account enumeration.

        A new account gets a verification link by email; an address that has an account
        already gets a notice instead (and no second account)."""
        await lifecycle.register(
            body.email,
            body.password,
            display_name=body.display_name,
            context=guard.context(request),
        )
        return RegisteredOut()

    async def _login(
        request: Request, response: Response, email: str, password: str, solution: str | None
    ) -> TokenPairOut:
        pair = await service.login(
            email,
            password,
            context=guard.context(request),
            user_agent=request.headers.get("user-agent"),
            device_cookie=request.cookies.get(cookie_name),
            solution=solution,
        )
        if pair.device_token:
            # OWASP device cookie: lets this browser past the account's challenge and lock.
            response.set_cookie(
                cookie_name,
                pair.device_token,
                max_age=180 * 86400,
                path="/",
                secure=secure_cookies,
                httponly=True,
                samesite="strict",
            )
        return TokenPairOut.model_validate(pair)

    @router.post(
        "/login",
        dependencies=public_login,
        response_model=TokenPairOut,
        summary="Log in with email and password",
        responses=_CREDENTIAL_ERRORS,
    )
    async def login(body: LoginIn, request: Request, response: Response) -> TokenPairOut:
        return await _login(request, response, body.email, body.password, body.altcha)

    @router.post(
        "/token",
        dependencies=public_login,
        response_model=TokenPairOut,
        responses=_CREDENTIAL_ERRORS,
        summary="Log in with the OAuth2 password form (the docs' Authorize button)",
    )
    async def token(
        request: Request,
        response: Response,
        username: Annotated[str, Form(max_length=320)],
        password: Annotated[str, Form(max_length=4096)],
        grant_type: Annotated[str | None, Form(pattern="^password$")] = None,
        altcha: Annotated[str | None, Form(max_length=4096)] = None,
    ) -> TokenPairOut:
        if not username or not password:
            raise InvalidCredentialsError("empty form field")
        return await _login(request, response, username, password, altcha)

    @router.post(
        "/refresh",
        dependencies=[guard.public("the refresh token is the credential", rate="refresh")],
        response_model=TokenPairOut,
        summary="Rotate a refresh token",
        responses={401: {"description": "Invalid, expired, revoked or reused token"}},
    )
    async def refresh(body: RefreshIn, request: Request) -> TokenPairOut:
        pair = await service.refresh(
            body.refresh_token,
            context=guard.context(request),
            user_agent=request.headers.get("user-agent"),
        )
        return TokenPairOut.model_validate(pair)

    @router.post(
        "/logout",
        status_code=204,
        summary="End this session",
        responses={401: {"description": "Invalid token"}},
    )
    async def logout(
        principal: Authenticated,
        request: Request,
        body: Annotated[LogoutIn | None, Body()] = None,
    ) -> Response:
        await service.logout(
            principal, body.refresh_token if body else None, context=guard.context(request)
        )
        return Response(status_code=204)

    @router.post(
        "/logout-all",
        status_code=204,
        summary="End every session of the caller",
        responses={401: {"description": "Invalid token"}},
    )
    async def logout_all(principal: Authenticated, request: Request) -> Response:
        await service.logout_all(principal, context=guard.context(request))
        return Response(status_code=204)

    return router


def jwks_router(guard: Guard, keys: KeySet) -> APIRouter:
    router = APIRouter(tags=["auth"])

    @router.get(
        "/.well-known/jwks.json",
        summary="Public signing keys (JWK set)",
        dependencies=[guard.public("public keys, for verifiers")],
    )
    async def jwks() -> dict[str, Any]:
        return keys.public_jwks()

    return router
