"""The ``/auth`` routes and the JWK set, as a factory that takes its dependencies."""

# No ``from __future__ import annotations`` here: FastAPI must resolve the local
# ``Authenticated`` alias of each factory at definition time.

from typing import Annotated, Any

from fastapi import APIRouter, Body, Form, Request, Response, status

from bastion.accounts import AccountLifecycle, Principal, TokenPair
from bastion.errors import CSRFError, InvalidCredentialsError, InvalidTokenError
from bastion.fastapi.dependencies import Guard
from bastion.fastapi.schemas import (
    CookieSessionOut,
    CSRFOut,
    LinkTokenIn,
    LoginIn,
    LogoutIn,
    MFACodeIn,
    MFADisableIn,
    MFAVerifyIn,
    ReauthenticateIn,
    RecoveryCodesOut,
    RefreshIn,
    RegisteredOut,
    RegisterIn,
    TokenPairOut,
    TOTPSetupOut,
)
from bastion.fastapi.transports import CookieTransport
from bastion.tokens import PRE_SESSION, KeyRing, KeySet

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
_COOKIE_MODE = (
    "Cookie mode (browsers): send `X-CSRF-Token` with the token of `GET /auth/csrf` (and "
    "its cookie); the tokens then go into `HttpOnly` cookies instead of the body."
)
_CSRF_ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"description": "Cookie mode: CSRF check failed"}
}
DEVICE_COOKIE = "__Host-bastion-device"
_DEVICE_COOKIE_PLAIN = "bastion-device"  # without Secure, the __Host- prefix is refused
_DEVICE_COOKIE_MAX_CHARS = 256
_DEFAULT_DEVICE_TTL = 180 * 86_400


def _single_cookie(request: Request, name: str, max_chars: int) -> str | None:
    """The value of cookie ``name`` when the request carries it exactly once, within
    ``max_chars``; else None. Two cookies of one name are an ambiguity (a planted one
    next to the real one), and the answer to ambiguity is "absent", never a guess."""
    values = [
        value.strip()
        for header in request.headers.getlist("cookie")
        for key, sep, value in (part.partition("=") for part in header.split(";"))
        if sep and key.strip() == name
    ]
    if len(values) != 1 or not values[0] or len(values[0]) > max_chars:
        return None
    return values[0]


def auth_router(
    guard: Guard, lifecycle: AccountLifecycle, *, secure_cookies: bool = True
) -> APIRouter:
    """``secure_cookies=False`` (development over plain HTTP only) drops ``Secure`` and
    the ``__Host-`` prefix from the device cookie."""
    router = APIRouter(prefix="/auth", tags=["auth"])
    service = guard.service
    # Callable by one who must enrol a second factor first (BASTION_MFA_REQUIRED).
    Enrolling = Annotated[Principal, guard.authenticated(enrolment=True)]
    public_signup = [guard.public("signs an anonymous caller up", rate="register")]
    public_login = [guard.public("signs an anonymous caller in", rate="login-ip")]
    cookie_name = DEVICE_COOKIE if secure_cookies else _DEVICE_COOKIE_PLAIN
    defence = service.login.defence
    device_ttl = defence.rules.device_ttl if defence is not None else _DEFAULT_DEVICE_TTL
    cookies: CookieTransport | None = guard.cookies

    def cookie_mode(request: Request) -> CookieTransport | None:
        """The transport when this request is in cookie mode: no ``Authorization`` header,
        and a CSRF header or a session cookie (the CSRF middleware has checked its
        origin and that header and cookie agree)."""
        return cookies if cookies is not None and cookies.in_cookie_mode(request) else None

    def refuse_csrf(request: Request, reason: str) -> CSRFError:
        guard.log_csrf_refusal(request, reason)
        return CSRFError(reason)

    def cookie_session(
        transport: CookieTransport, response: Response, pair: TokenPair
    ) -> CookieSessionOut:
        csrf_token = transport.start_session(response, pair, pair.session_id)
        return CookieSessionOut(
            csrf_token=csrf_token,
            expires_in=pair.expires_in,
            refresh_expires_in=pair.refresh_expires_in,
        )

    def answer(
        transport: CookieTransport | None, response: Response, pair: TokenPair
    ) -> TokenPairOut | CookieSessionOut:
        """A new session as its client takes it: the cookie session in cookie mode,
        else the token pair as JSON."""
        if transport is not None:
            return cookie_session(transport, response, pair)
        return TokenPairOut.model_validate(pair)

    def pre_session(request: Request, refusal: str) -> CookieTransport | None:
        """Login CSRF: in cookie mode, a request that opens a session needs the
        pre-session token (GET /auth/csrf); the transport, or None for a bearer client."""
        transport = cookie_mode(request)
        if transport is not None and not transport.csrf.valid(
            transport.csrf_token(request), PRE_SESSION
        ):
            raise refuse_csrf(request, refusal)
        return transport

    @router.get(
        "/csrf",
        dependencies=[guard.public("a CSRF token for the cookie mode's login")],
        response_model=CSRFOut,
        summary="A CSRF token (cookie mode), also set as its cookie",
        description=(
            "Before login the token is good for the login only; a login or refresh in "
            "cookie mode returns the session's own token. " + _COOKIE_MODE
        ),
    )
    async def csrf(request: Request, response: Response) -> CSRFOut:
        if cookies is None:
            raise CSRFError("the cookie mode is off")
        if request.headers.get("sec-fetch-site", "").lower() == "cross-site":
            # Another site's navigation here would only plant cookies; it gets nothing.
            raise refuse_csrf(request, "CSRF token asked for by another site")
        session_id = await _cookie_session_id(cookies, request)
        if session_id is None:
            return CSRFOut(csrf_token=cookies.issue_pre_session_csrf(response))
        return CSRFOut(csrf_token=cookies.issue_csrf(response, session_id))

    async def _cookie_session_id(transport: CookieTransport, request: Request) -> str | None:
        """The live session of the request's cookies: its access token's, or else (the
        access token expired) its refresh token's."""
        access = transport.access_token(request)
        if access:
            try:
                return (await service.authenticator.authenticate(access)).session_id
            except InvalidTokenError:
                pass
        refresh_token = transport.refresh_token(request)
        return (
            await service.sessions.session_of_refresh_token(refresh_token)
            if refresh_token
            else None
        )

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
    ) -> TokenPair:
        pair = await service.login.sign_in(
            email,
            password,
            context=guard.context(request),
            user_agent=request.headers.get("user-agent"),
            device_cookie=_single_cookie(request, cookie_name, _DEVICE_COOKIE_MAX_CHARS),
            solution=solution,
        )
        set_device_cookie(response, pair)
        return pair

    def set_device_cookie(response: Response, pair: TokenPair) -> None:
        if pair.device_token:
            # OWASP device cookie: lets this browser past the account's challenge and lock.
            # The server refuses it after ``device_ttl`` whatever the browser keeps.
            response.set_cookie(
                cookie_name,
                pair.device_token,
                max_age=device_ttl,
                path="/",
                secure=secure_cookies,
                httponly=True,
                samesite="strict",
            )

    @router.post(
        "/login",
        dependencies=public_login,
        response_model=TokenPairOut | CookieSessionOut,
        summary="Log in with email and password",
        description=_COOKIE_MODE,
        responses={**_CREDENTIAL_ERRORS, **_CSRF_ERRORS},
    )
    async def login(body: LoginIn, request: Request, response: Response) -> Any:
        transport = pre_session(request, "login without the pre-session CSRF token")
        pair = await _login(request, response, body.email, body.password, body.altcha)
        return answer(transport, response, pair)

    @router.post(
        "/login/confirm",
        dependencies=[guard.public("the emailed sign-in link is the credential", rate="links")],
        response_model=TokenPairOut | CookieSessionOut,
        summary="Finish signing in to a locked account with the emailed sign-in link",
        description=(
            "When failed logins have locked an account, the right password from a device "
            "without its device cookie answers as a wrong one and emails the owner a "
            "single-use sign-in link (`/auth/login/confirm#token=...`, 15 minutes). Post "
            "its token here: the answer is that of a login, with a device cookie. " + _COOKIE_MODE
        ),
        responses={
            400: {"description": "The link is invalid, used or expired (`invalid-link`)"},
            422: {"description": "Validation error"},
            429: {"description": "Too many attempts (quota-exceeded problem, `Retry-After`)"},
            **_CSRF_ERRORS,
        },
    )
    async def confirm_login(body: LinkTokenIn, request: Request, response: Response) -> Any:
        transport = pre_session(request, "sign-in link without the pre-session CSRF token")
        pair = await lifecycle.sign_in_with_link(
            body.token,
            context=guard.context(request),
            user_agent=request.headers.get("user-agent"),
        )
        set_device_cookie(response, pair)
        return answer(transport, response, pair)

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
        pair = await _login(request, response, username, password, altcha)
        return TokenPairOut.model_validate(pair)

    @router.post(
        "/refresh",
        dependencies=[guard.public("the refresh token is the credential", rate="refresh")],
        response_model=TokenPairOut | CookieSessionOut,
        summary="Rotate a refresh token",
        description=(
            "Bearer clients send `{refresh_token}`; in cookie mode the body is empty and "
            "the refresh cookie is the credential."
        ),
        responses={
            401: {"description": "Invalid, expired, revoked or reused token"},
            **_CSRF_ERRORS,
        },
    )
    async def refresh(
        request: Request,
        response: Response,
        body: Annotated[RefreshIn | None, Body()] = None,
    ) -> Any:
        transport = cookie_mode(request) if body is None else None
        token = body.refresh_token if body is not None else None
        if transport is not None:
            token = transport.refresh_token(request)
            session_id = await service.sessions.session_of_refresh_token(token) if token else None
            if session_id is not None and not transport.csrf_valid(request, session_id):
                raise refuse_csrf(request, "refresh without this session's CSRF token")
        if not token:
            raise InvalidTokenError("no refresh token")
        pair = await service.sessions.rotate(
            token,
            context=guard.context(request),
            user_agent=request.headers.get("user-agent"),
        )
        return answer(transport, response, pair)

    @router.post(
        "/logout",
        status_code=204,
        summary="End this session",
        responses={401: {"description": "Invalid token"}},
    )
    async def logout(
        principal: Enrolling,
        request: Request,
        body: Annotated[LogoutIn | None, Body()] = None,
    ) -> Response:
        transport = cookie_mode(request)
        refresh_token = body.refresh_token if body else None
        if refresh_token is None and transport is not None:
            refresh_token = transport.refresh_token(request)
        await service.sessions.logout(principal, refresh_token, context=guard.context(request))
        answer = Response(status_code=204)
        if transport is not None:
            transport.end_session(answer)
        return answer

    @router.post(
        "/logout-all",
        status_code=204,
        summary="End every session of the caller",
        responses={401: {"description": "Invalid token"}},
    )
    async def logout_all(principal: Enrolling, request: Request) -> Response:
        await service.sessions.logout_all(principal, context=guard.context(request))
        answer = Response(status_code=204)
        transport = cookie_mode(request)
        if transport is not None:
            transport.end_session(answer)
        return answer

    # -- the second factor (docs/mfa.md) ---------------------------------------------

    second = service.mfa
    # Sensitive changes need a recent sign-in (step-up; POST /auth/reauthenticate).
    SteppedUp = Annotated[Principal, guard.authenticated(step_up=True)]
    EnrollingSteppedUp = Annotated[Principal, guard.authenticated(step_up=True, enrolment=True)]
    _step_up_error = {
        "description": (
            "Invalid token, or a sign-in older than the step-up age "
            "(`insufficient-user-authentication`: POST /auth/reauthenticate first)"
        )
    }
    if second is not None:
        _mfa_errors: dict[int | str, dict[str, Any]] = {
            401: {"description": "Invalid token, or the code was refused (`mfa-failed`)"},
            422: {"description": "Validation error"},
            429: {"description": "Too many codes tried (quota-exceeded problem)"},
        }

        @router.post(
            "/mfa/verify",
            dependencies=public_login,
            response_model=TokenPairOut | CookieSessionOut,
            summary="Finish a sign-in with the second factor",
            description=(
                "After a login (or a sign-in link, or a provider) answered "
                "`{mfa_required: true, mfa_token}`: the token and a TOTP or recovery code. "
                "The token lives five minutes, takes five codes at most, works once and "
                "only for the client that took the first step. " + _COOKIE_MODE
            ),
            responses={
                401: {"description": "The code or the mfa_token was refused (`mfa-failed`)"},
                422: {"description": "Validation error"},
                429: {"description": "Too many codes tried (quota-exceeded problem)"},
                **_CSRF_ERRORS,
            },
        )
        async def verify_mfa(body: MFAVerifyIn, request: Request, response: Response) -> Any:
            transport = pre_session(request, "second factor without the pre-session CSRF token")
            pair = await second.verify(
                body.mfa_token,
                body.code,
                context=guard.context(request),
                user_agent=request.headers.get("user-agent"),
                device_cookie=_single_cookie(request, cookie_name, _DEVICE_COOKIE_MAX_CHARS),
            )
            set_device_cookie(response, pair)
            response.headers["Cache-Control"] = "no-store"
            return answer(transport, response, pair)

        @router.post(
            "/mfa/totp/setup",
            response_model=TOTPSetupOut,
            summary="Start enrolling a TOTP authenticator",
            description="Not active until confirmed with a code from it.",
            responses={
                401: _step_up_error,
                409: {"description": "A second factor is on already"},
            },
        )
        async def totp_setup(principal: EnrollingSteppedUp, response: Response) -> TOTPSetupOut:
            enrolment = await second.setup(principal)
            response.headers["Cache-Control"] = "no-store"
            return TOTPSetupOut(
                secret=enrolment.secret,
                otpauth_uri=enrolment.otpauth_uri,
                qr_svg=enrolment.qr_svg,
            )

        @router.post(
            "/mfa/totp/confirm",
            response_model=RecoveryCodesOut,
            summary="Turn the TOTP factor on with a code from it",
            description="Answers the ten recovery codes, shown this once.",
            responses=_mfa_errors,
        )
        async def totp_confirm(
            body: MFACodeIn, principal: Enrolling, request: Request, response: Response
        ) -> RecoveryCodesOut:
            codes = await second.confirm(principal, body.code, context=guard.context(request))
            response.headers["Cache-Control"] = "no-store"
            return RecoveryCodesOut(recovery_codes=codes)

        @router.post(
            "/mfa/totp/disable",
            status_code=204,
            summary="Turn the second factor off (the password and a code are required)",
            responses={
                **_mfa_errors,
                403: {"description": "The password is wrong (`wrong-password`)"},
                409: {"description": "No second factor is on"},
            },
        )
        async def totp_disable(
            body: MFADisableIn, principal: SteppedUp, request: Request
        ) -> Response:
            await second.disable(
                principal, body.password, body.code, context=guard.context(request)
            )
            return Response(status_code=204)

        @router.post(
            "/mfa/recovery-codes",
            response_model=RecoveryCodesOut,
            summary="Replace the recovery codes",
            description="Ten new codes, shown this once; the old ones stop working.",
            responses={401: _step_up_error, 409: {"description": "No second factor is on"}},
        )
        async def new_recovery_codes(
            principal: SteppedUp, request: Request, response: Response
        ) -> RecoveryCodesOut:
            codes = await second.new_recovery_codes(principal, context=guard.context(request))
            response.headers["Cache-Control"] = "no-store"
            return RecoveryCodesOut(recovery_codes=codes)

        @router.post(
            "/reauthenticate",
            response_model=TokenPairOut | CookieSessionOut,
            summary="Prove who you are again, for step-up",
            description=(
                "The bearer token plus the password (and a code when the second factor "
                "is on): a new token pair with a fresh `auth_time`, which the step-up "
                "routes accept for the step-up age. The calling session is replaced; in cookie "
                "mode by a new cookie session. " + _COOKIE_MODE
            ),
            responses={
                401: {"description": "Invalid token, or the code was refused (`mfa-failed`)"},
                403: {"description": "The password is wrong (`wrong-password`)"},
                422: {"description": "Validation error"},
                429: {"description": "Too many attempts"},
            },
        )
        async def reauthenticate(
            body: ReauthenticateIn, principal: Enrolling, request: Request, response: Response
        ) -> Any:
            transport = cookie_mode(request)
            pair = await second.reauthenticate(
                principal,
                body.password,
                body.code,
                context=guard.context(request),
                user_agent=request.headers.get("user-agent"),
            )
            response.headers["Cache-Control"] = "no-store"
            return answer(transport, response, pair)

    return router


def jwks_router(guard: Guard, keys: KeyRing | KeySet) -> APIRouter:
    """``/.well-known/jwks.json``: with a :class:`KeyRing`, the keys that still verify (a
    retired key leaves when its tokens have expired, a revoked one at the ring's next read
    of the key file); with a :class:`KeySet`, every key in it."""
    router = APIRouter(tags=["auth"])

    @router.get(
        "/.well-known/jwks.json",
        summary="Public signing keys (JWK set)",
        dependencies=[guard.public("public keys, for verifiers")],
    )
    async def jwks() -> dict[str, Any]:
        return keys.public_jwks()

    return router
