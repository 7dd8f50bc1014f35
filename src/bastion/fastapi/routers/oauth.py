"""The ``/auth/oauth`` routes: sign in with an external provider, link and unlink one.

``GET /auth/oauth/{provider}/authorize`` sends the browser to the provider with the
sign-in's cookie (``__Host-bastion-oauth`` when cookies are secure; ``SameSite=Lax``,
as it must come back on the provider's redirect; ten minutes). The callback answers
like ``POST /auth/login``: the token pair as JSON, or, when the sign-in was started by a
browser's navigation (``Sec-Fetch-Mode: navigate``), the cookie session and 303 to
``next``. Tokens never appear in a URL. Every refusal is one 400 ``oauth-failed`` with
nothing that tells the reasons apart, and an ``auth_failure`` event that does.
"""

# No ``from __future__ import annotations`` here: FastAPI must resolve the local
# ``Authenticated`` alias at definition time.

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import BaseModel

from bastion.accounts import LastSignInMethodError, Principal
from bastion.errors import ConflictError, MFARequiredError, NotFoundError, OAuthFailedError
from bastion.fastapi.dependencies import Guard
from bastion.fastapi.problems import error_response
from bastion.fastapi.routers.auth import _single_cookie
from bastion.fastapi.schemas import TokenPairOut
from bastion.runtime import Security

__all__ = ["oauth_router"]

_COOKIE = "__Host-bastion-oauth"
_COOKIE_PLAIN = "bastion-oauth"  # without Secure, the __Host- prefix is refused
_COOKIE_MAX_CHARS = 2048
_QUERY_MAX_CHARS = 4096
_TO_PROVIDER: dict[int | str, dict[str, Any]] = {
    302: {"description": "To the provider"},
    404: {"description": "No such provider"},
}
_FAILED: dict[int | str, dict[str, Any]] = {
    400: {"description": "The sign-in failed (one answer for every reason)"}
}


class ProviderOut(BaseModel):
    name: str
    display_name: str


def oauth_router(guard: Guard, security: Security, *, secure_cookies: bool = True) -> APIRouter:
    oauth = security.oauth
    if oauth is None:
        raise ValueError("no sign-in provider is configured (BASTION_OAUTH_PROVIDERS)")
    external = security.accounts.external
    router = APIRouter(prefix="/auth/oauth", tags=["auth"])
    cookie_name = _COOKIE if secure_cookies else _COOKIE_PLAIN
    # Linking and unlinking change how the account signs in: a recent sign-in first.
    SteppedUp = Annotated[Principal, guard.authenticated(step_up=True)]
    # The OpenAPI document lists the providers; an unknown one still answers 404.
    names = [name for name, _ in oauth.names()]
    Name = Annotated[
        str,
        Path(
            description="A sign-in provider: " + ", ".join(names),
            json_schema_extra={"enum": names},
        ),
    ]
    start = [guard.public("starts a sign-in with a provider", rate="login-ip")]
    finish = [guard.public("finishes a sign-in with a provider", rate="login-ip")]

    def known(provider: str) -> str:
        if provider not in oauth:
            raise NotFoundError("no such provider")
        return provider

    def redirect(url: str, cookie: str) -> Response:
        response = RedirectResponse(url, status_code=status.HTTP_302_FOUND)
        response.set_cookie(
            cookie_name,
            cookie,
            max_age=oauth.binding.max_age,
            path="/",
            secure=secure_cookies,
            httponly=True,
            samesite="lax",  # it comes back on the provider's top-level redirect
        )
        return response

    async def to_provider(
        request: Request, provider: str, next_path: str | None, linking: Principal | None = None
    ) -> Response:
        """To the provider, with the sign-in's cookie; a browser's navigation is
        answered with a cookie session on the way back. ``linking``: the signed-in
        caller whose account the identity is to be linked to."""
        navigation = request.headers.get("sec-fetch-mode", "").lower() == "navigate"
        try:
            url, cookie = await oauth.authorize(
                known(provider),
                next_path,
                cookie_mode=navigation and guard.cookies is not None,
                link_to=str(linking.user_id) if linking else None,
                link_session=linking.session_id if linking else None,
            )
        except OAuthFailedError as exc:
            return await failed(request, provider, exc)
        return redirect(url, cookie)

    def forget(response: Response) -> Response:
        response.delete_cookie(
            cookie_name, path="/", secure=secure_cookies, httponly=True, samesite="lax"
        )
        return response

    def answer_query(request: Request) -> dict[str, str]:
        """The provider's answer; a parameter given twice is an ambiguity, refused."""
        if len(request.url.query) > _QUERY_MAX_CHARS:
            raise OAuthFailedError("the answer is too long")
        query: dict[str, str] = {}
        for name, value in request.query_params.multi_items():
            if name in query:
                raise OAuthFailedError(f"{name} given twice")
            query[name] = value
        return query

    @router.get(
        "/providers",
        dependencies=[guard.public("lists the sign-in providers for a login page")],
        response_model=list[ProviderOut],
        summary="The sign-in providers",
    )
    async def providers() -> list[ProviderOut]:
        return [ProviderOut(name=name, display_name=label) for name, label in oauth.names()]

    @router.get(
        "/{provider}/authorize",
        dependencies=start,
        status_code=status.HTTP_302_FOUND,
        response_class=Response,
        responses=_TO_PROVIDER,
        summary="Sign in with a provider: to the provider, with PKCE, state and nonce",
    )
    async def authorize(
        provider: Name,
        request: Request,
        next: Annotated[str | None, Query(max_length=512)] = None,
    ) -> Response:
        return await to_provider(request, provider, next)

    @router.post(
        "/{provider}/link",
        status_code=status.HTTP_302_FOUND,
        response_class=Response,
        responses=_TO_PROVIDER,
        summary="Link an identity at a provider to the signed-in account",
    )
    async def link(
        provider: Name,
        principal: SteppedUp,
        request: Request,
        next: Annotated[str | None, Query(max_length=512)] = None,
    ) -> Response:
        return await to_provider(request, provider, next, principal)

    @router.get(
        "/{provider}/callback",
        dependencies=finish,
        response_model=TokenPairOut,
        responses=_FAILED | {303: {"description": "Cookie mode: the session, and to `next`"}},
        summary="The provider's answer: a session, as POST /auth/login opens one",
    )
    async def callback(provider: Name, request: Request) -> Response:
        cookie = _single_cookie(request, cookie_name, _COOKIE_MAX_CHARS)
        context = guard.context(request)
        try:
            identity, started = await oauth.callback(known(provider), answer_query(request), cookie)
            if started.link_to is not None:
                if started.link_session is None:
                    raise OAuthFailedError("a link without the session that asked for it")
                await external.link(
                    uuid.UUID(started.link_to),
                    identity,
                    session_id=uuid.UUID(started.link_session),
                    context=context,
                )
                done: Response = (
                    RedirectResponse(started.next, status_code=status.HTTP_303_SEE_OTHER)
                    if started.cookie_mode
                    else Response(status_code=status.HTTP_204_NO_CONTENT)
                )
                return forget(done)
            pair = await external.sign_in(
                identity, context=context, user_agent=request.headers.get("user-agent")
            )
        except OAuthFailedError as exc:
            return forget(await failed(request, provider, exc))
        except MFARequiredError as exc:
            # The account has a second factor: the sign-in goes on at POST
            # /auth/mfa/verify (API clients and browsers alike get the mfa_token).
            body = {"mfa_required": True, "mfa_token": exc.mfa_token}
            return forget(JSONResponse(body, headers={"Cache-Control": "no-store"}))
        if started.cookie_mode and guard.cookies is not None:
            response: Response = RedirectResponse(
                started.next, status_code=status.HTTP_303_SEE_OTHER
            )
            guard.cookies.start_session(response, pair, pair.session_id)
        else:
            body = TokenPairOut.model_validate(pair).model_dump()
            response = JSONResponse(body, headers={"Cache-Control": "no-store"})
        return forget(response)

    @router.delete(
        "/{provider}",
        status_code=status.HTTP_204_NO_CONTENT,
        responses={
            404: {"description": "No identity of that provider is linked"},
            409: {"description": "It is the account's last way to sign in"},
        },
        summary="Unlink the account's identity at a provider",
    )
    async def unlink(provider: Name, principal: SteppedUp, request: Request) -> Response:
        try:
            removed = await external.unlink(
                principal.user_id, provider, context=guard.context(request)
            )
        except LastSignInMethodError as exc:
            raise ConflictError(exc.reason) from None
        if not removed:
            raise NotFoundError("no identity of that provider is linked")
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    async def failed(request: Request, provider: str, exc: OAuthFailedError) -> Response:
        guard.events.emit_soon(
            "auth_failure",
            context=guard.context(request),
            details=f"sign-in with {provider[:32]} refused: {exc.reason}",
        )
        return await error_response(request, OAuthFailedError())

    return router
