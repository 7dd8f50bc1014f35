"""The account-lifecycle routes: email verification, password reset and change, sessions,
the unlock link, and the small pages the emailed links open.

The pages read the token from the link's fragment (never sent to a server) and post it;
the ``POST`` routes are the API a deployment's own frontend calls instead.
"""

# No ``from __future__ import annotations`` here: FastAPI must resolve the local
# ``Authenticated`` alias of the factory at definition time.

from importlib import resources
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import HTMLResponse

from bastion.accounts import AccountLifecycle, Principal
from bastion.fastapi.dependencies import Guard
from bastion.fastapi.schemas import (
    AcceptedOut,
    EmailIn,
    LinkTokenIn,
    PasswordChangeIn,
    PasswordResetIn,
    SessionOut,
)

__all__ = ["LINK_PAGE_PATHS", "account_router"]

_LINK_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "The link is invalid, used or expired (`invalid-link`)"},
    422: {"description": "Validation error"},
    429: {"description": "Too many attempts (quota-exceeded problem, `Retry-After`)"},
}
_EMAIL_ERRORS: dict[int | str, dict[str, Any]] = {
    422: {"description": "Not an email address"},
    429: {"description": "Too many requests for this address or from this client"},
}
# The paths of the pages emailed links open (and their script): RequestContextMiddleware
# gives them a CSP that admits our own script only.
LINK_PAGE_PATHS = ("/auth/email/verify", "/auth/password/reset", "/auth/unlock", "/auth/link.js")
_PAGES = {
    "verify-email": ("Confirm your email address", "/auth/email/verify", ""),
    "password-reset": ("Choose a new password", "/auth/password/reset", "password"),
    "unlock": ("Unlock your account", "/auth/unlock", ""),
}


def _asset(name: str) -> str:
    return resources.files("bastion.fastapi").joinpath("assets", name).read_text("utf-8")


def _page(kind: str, prefix: str) -> HTMLResponse:
    title, action, password = _PAGES[kind]
    html = (
        _asset("link.html")
        .replace("{{title}}", title)
        .replace("{{prefix}}", prefix)
        .replace("{{action}}", prefix + action)
        .replace("{{password}}", "true" if password else "false")
    )
    return HTMLResponse(html)


def account_router(guard: Guard, lifecycle: AccountLifecycle, *, prefix: str = "") -> APIRouter:
    """The account routes; ``prefix`` is the path prefix the app includes them under (the
    link pages name their own URLs with it)."""
    router = APIRouter(prefix="/auth", tags=["account"])
    Authenticated = Annotated[Principal, guard.authenticated()]
    SteppedUp = Annotated[Principal, guard.authenticated(step_up=True)]
    sends_mail = [
        guard.public("sends a link to an address, if it has an account", rate="password-reset")
    ]
    redeems = [guard.public("the emailed one-time token is the credential", rate="links")]
    page = [guard.public("the page an emailed link opens; it holds no data", rate="links")]
    script = [guard.public("the script of the link pages")]

    @router.post(
        "/password/forgot",
        dependencies=sends_mail,
        status_code=status.HTTP_202_ACCEPTED,
        response_model=AcceptedOut,
        summary="Email a password reset link",
        responses=_EMAIL_ERRORS,
    )
    async def forgot_password(body: EmailIn, request: Request) -> Any:
        """Always 202 with the same body: whether the address has an account is never
        told, by the answer or by its timing (the lookup and the email happen after it)."""
        await lifecycle.forgot_password(body.email, context=guard.context(request))
        return AcceptedOut()

    @router.post(
        "/password/reset",
        dependencies=redeems,
        status_code=204,
        summary="Set a new password with a reset link's token",
        responses=_LINK_ERRORS,
    )
    async def reset_password(body: PasswordResetIn, request: Request) -> Response:
        """The token works once; every session and access token of the account ends."""
        await lifecycle.reset_password(
            body.token, body.new_password, context=guard.context(request)
        )
        return Response(status_code=204)

    @router.post(
        "/password/change",
        status_code=204,
        summary="Change the password (the current one is required)",
        responses={
            401: {"description": "Invalid token"},
            403: {"description": "The current password is wrong (`wrong-password`)"},
            422: {"description": "The new password is refused"},
            429: {"description": "Too many attempts"},
        },
    )
    async def change_password(
        body: PasswordChangeIn, principal: SteppedUp, request: Request
    ) -> Response:
        """Every other session ends, and every access token issued before: this session's
        refresh token stays valid, so refresh it for a new access token."""
        await lifecycle.change_password(
            principal,
            body.current_password,
            body.new_password,
            context=guard.context(request),
        )
        return Response(status_code=204)

    @router.post(
        "/email/verify",
        dependencies=redeems,
        status_code=204,
        summary="Verify the email address with the emailed link's token",
        responses=_LINK_ERRORS,
    )
    async def verify_email(body: LinkTokenIn, request: Request) -> Response:
        await lifecycle.verify_email(body.token, context=guard.context(request))
        return Response(status_code=204)

    @router.post(
        "/email/verify/request",
        dependencies=sends_mail,
        status_code=status.HTTP_202_ACCEPTED,
        response_model=AcceptedOut,
        summary="Email a new verification link",
        responses=_EMAIL_ERRORS,
    )
    async def request_verification(body: EmailIn, request: Request) -> Any:
        """Always 202 with the same body, as the forgotten-password route."""
        await lifecycle.request_verification(body.email, context=guard.context(request))
        return AcceptedOut()

    @router.post(
        "/unlock",
        dependencies=redeems,
        status_code=204,
        summary="Unlock the account with the emailed link's token",
        responses=_LINK_ERRORS,
    )
    async def unlock(body: LinkTokenIn, request: Request) -> Response:
        await lifecycle.unlock(body.token, context=guard.context(request))
        return Response(status_code=204)

    @router.get(
        "/sessions",
        response_model=list[SessionOut],
        summary="The caller's live sessions",
        responses={401: {"description": "Invalid token"}},
    )
    async def sessions(principal: Authenticated) -> list[SessionOut]:
        return [
            SessionOut(
                id=view.session.id,
                created_at=view.session.created_at,
                last_used_at=view.session.last_used_at,
                ip_address=view.session.ip_address,
                user_agent=view.session.user_agent,
                current=view.current,
            )
            for view in await lifecycle.sessions(principal)
        ]

    @router.delete(
        "/sessions/{session_id}",
        status_code=204,
        summary="End one of the caller's sessions",
        responses={401: {"description": "Invalid token"}, 404: {"description": "No such session"}},
    )
    async def end_session(session_id: UUID, principal: Authenticated, request: Request) -> Response:
        await lifecycle.end_session(principal, session_id, context=guard.context(request))
        return Response(status_code=204)

    @router.get("/email/verify", dependencies=page, include_in_schema=False)
    async def verify_page() -> HTMLResponse:
        return _page("verify-email", prefix)

    @router.get("/password/reset", dependencies=page, include_in_schema=False)
    async def reset_page() -> HTMLResponse:
        return _page("password-reset", prefix)

    @router.get("/unlock", dependencies=page, include_in_schema=False)
    async def unlock_page() -> HTMLResponse:
        return _page("unlock", prefix)

    @router.get("/link.js", dependencies=script, include_in_schema=False)
    async def link_script() -> Response:
        return Response(
            _asset("link.js"),
            media_type="text/javascript",
            headers={"Cache-Control": "public, max-age=3600"},
        )

    return router
