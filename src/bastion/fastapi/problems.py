"""RFC 9457 problem responses from every layer."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import Send

from bastion.accounts import InvalidEmailError
from bastion.errors import (
    BastionError,
    DatabaseUnavailableError,
    InsufficientAuthenticationError,
    InvalidCredentialsError,
    MFARequiredError,
    PasswordPolicyError,
    RateLimitedError,
)
from bastion.throttle import Verdict

__all__ = [
    "CSRF_DETAIL",
    "INPUT_REFUSED",
    "PROBLEM_JSON",
    "QUOTA_EXCEEDED",
    "QUOTA_TITLE",
    "error_response",
    "install_problem_handlers",
    "mark_input_refused",
    "problem",
    "problem_body",
    "quota_problem_body",
    "rate_headers",
    "send_problem",
    "send_problem_body",
    "validation_problem",
]

PROBLEM_JSON = "application/problem+json"
INPUT_REFUSED = "bastion_input_refused"  # the request state's key (InputEventsMiddleware)
_logger = logging.getLogger("bastion.errors")


def mark_input_refused(scope: Any, reason: str) -> None:
    """Say that this request is refused for its input (a body too large, of the wrong
    type or shape, a field that fails validation): ``InputEventsMiddleware`` logs it.
    ``scope`` is the ASGI scope or a Request; ``reason`` names no submitted value."""
    scope = scope.scope if isinstance(scope, Request) else scope
    scope.setdefault("state", {})[INPUT_REFUSED] = reason


def _fields(errors: list[dict[str, Any]]) -> str:
    """The bad fields' locations, ``body.email, query.limit``: where, never what. The
    name of a member the model does not know is the client's own text (it may be a
    password, forged log text, a NUL): it is logged as ``<unknown>``."""
    located = []
    for error in errors:
        loc = [str(part) for part in error.get("loc", ())]
        if error.get("type") == "extra_forbidden" and loc:
            loc[-1] = "<unknown>"
        located.append(".".join(loc))
    return ", ".join(located)


_HTTP_SLUGS = {
    400: ("bad-request", "Bad request"),
    401: ("invalid-token", "Invalid token"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    413: ("payload-too-large", "Payload too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("validation-error", "Validation error"),
    429: ("rate-limited", "Too many requests"),
    500: ("internal-error", "Internal server error"),
    503: ("service-unavailable", "Service unavailable"),
}
_SECRET_FIELDS = {"password", "new_password", "current_password", "refresh_token", "token"}


def problem_body(
    status: int, slug: str, title: str, detail: str | None, request_id: str | None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"type": f"/problems/{slug}", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body["request_id"] = request_id
    body.update(extra)
    return body


# The rate-limit fields of draft-ietf-httpapi-ratelimit-headers-10 and the 429 body.
QUOTA_EXCEEDED = "https://iana.org/assignments/http-problem-types#quota-exceeded"
QUOTA_TITLE = "Request cannot be satisfied as assigned quota has been exceeded"


def rate_headers(verdict: Verdict) -> list[tuple[bytes, bytes]]:
    """``RateLimit-Policy`` with every policy that applied, ``RateLimit`` with the one
    closest to its limit (Structured Fields lists of strings with parameters)."""
    closest = verdict.closest
    if closest is None:
        return []
    policies = ", ".join(
        f'"{s.policy.name}";q={s.policy.quota};w={s.policy.window}' for s in verdict.states
    )
    current = f'"{closest.policy.name}";r={closest.remaining};t={closest.reset}'
    return [(b"ratelimit-policy", policies.encode()), (b"ratelimit", current.encode())]


def quota_problem_body(
    retry_after: int, violated: list[str], request_id: str | None, *, blocked: bool = False
) -> dict[str, Any]:
    """The 429 body: the registered ``quota-exceeded`` type with ``violated-policies``
    (empty for a repeat-offender block, which the detail then names)."""
    detail = (
        f"Blocked after repeated refused requests; retry in {retry_after} s."
        if blocked
        else f"Too many requests; retry in {retry_after} s."
    )
    body = problem_body(
        429,
        "quota-exceeded",
        QUOTA_TITLE,
        detail,
        request_id,
        **{"violated-policies": violated},
    )
    body["type"] = QUOTA_EXCEEDED
    return body


async def send_problem(
    send: Send,
    status: int,
    slug: str,
    title: str,
    detail: str | None,
    request_id: str | None,
    *,
    close: bool = False,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Send a problem response from ASGI middleware, below the framework's handlers."""
    extra = [*(headers or []), *([(b"connection", b"close")] if close else [])]
    await send_problem_body(send, problem_body(status, slug, title, detail, request_id), extra)


async def send_problem_body(
    send: Send, body: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Send a built problem body (its ``status`` is the response's) from ASGI middleware."""
    encoded = json.dumps(body).encode()
    start = [
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(encoded)).encode()),
        *(headers or []),
    ]
    await send({"type": "http.response.start", "status": body["status"], "headers": start})
    await send({"type": "http.response.body", "body": encoded})


def problem(
    request: Request,
    status: int,
    slug: str,
    title: str,
    detail: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    request_id = getattr(request.state, "request_id", None)
    return JSONResponse(
        problem_body(status, slug, title, detail, request_id, **extra),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def validation_problem(request: Request, errors: list[dict[str, Any]]) -> JSONResponse:
    """The 422 ``validation-error`` problem; each error has ``loc`` and ``msg``."""
    mark_input_refused(request, f"invalid input: {_fields(errors)}")
    return problem(
        request,
        422,
        "validation-error",
        "Validation error",
        "The request is not valid; see errors.",
        errors=errors,
    )


CSRF_DETAIL = (
    "A cookie session needs the X-CSRF-Token header on state-changing requests, "
    "from this site; GET /auth/csrf gives a token."
)
_PUBLIC_DETAIL = {
    "invalid-credentials": "Email or password is incorrect.",
    "invalid-token": "The access or refresh token is missing, invalid, expired or revoked.",
    "service-busy": "The service is busy; try again shortly.",
    "service-unavailable": "A store the service depends on does not answer; try again shortly.",
    "invalid-link": "The link is invalid, used or expired; ask for a new one.",
    "wrong-password": "The current password is incorrect.",
    "mfa-failed": "The code or the mfa_token is invalid, used or expired.",
    "insufficient-user-authentication": (
        "This needs a recent sign-in: POST /auth/reauthenticate for a fresh token."
    ),
    "csrf-failed": CSRF_DETAIL,
    # One answer for a missing object and one the caller may not see (OWASP API1:2023).
    "not-found": "No such resource.",
}


async def _bastion_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BastionError)
    if isinstance(exc, MFARequiredError):
        # Not a refusal: the first step passed, the second is asked for (API.md).
        body = {"mfa_required": True, "mfa_token": exc.mfa_token}
        return JSONResponse(body, headers={"Cache-Control": "no-store"})
    headers: dict[str, str] = {}
    extra: dict[str, Any] = {}
    detail = _PUBLIC_DETAIL.get(exc.code)
    if exc.status == 401 and exc.code == "invalid-token":
        headers["WWW-Authenticate"] = 'Bearer realm="bastion", error="invalid_token"'
    if isinstance(exc, InsufficientAuthenticationError):
        # RFC 9470 §3: the client signs in again, at most max_age seconds before it calls.
        headers["WWW-Authenticate"] = (
            f'Bearer error="insufficient_user_authentication", max_age={exc.max_age}'
        )
    if exc.status == 503:
        headers["Retry-After"] = "1" if exc.code == "service-busy" else "5"
    if isinstance(exc, DatabaseUnavailableError) and exc.outage is not None:
        exc.outage.refused()  # logged once per outage, with the count; never per request
    if isinstance(exc, InvalidCredentialsError):
        if exc.retry_after:
            headers["Retry-After"] = str(exc.retry_after)
        if exc.challenge is not None:
            extra["challenge"] = exc.challenge
    if isinstance(exc, RateLimitedError):
        return _quota_exceeded(request, exc)
    if isinstance(exc, PasswordPolicyError):
        mark_input_refused(request, f"password refused by the policy: body.{exc.field}")
        detail = "The password was refused."
        extra["errors"] = [{"loc": ["body", exc.field], "msg": r} for r in exc.reasons]
    elif detail is None and exc.status < 500:
        detail = exc.reason
    return problem(request, exc.status, exc.code, exc.title, detail, headers=headers, **extra)


async def error_response(request: Request, exc: BastionError) -> Response:
    """The answer the app's handlers give ``exc``, for the guard's middleware, which
    refuses before the framework's handlers run: one answer wherever it is refused."""
    return await _bastion_error(request, exc)


def _quota_exceeded(request: Request, exc: RateLimitedError) -> Response:
    verdict: Any = exc.verdict
    retry_after = max(1, int(getattr(verdict, "retry_after", 1)))
    violated = list(getattr(verdict, "violated", ()))
    headers = {"Retry-After": str(retry_after)}
    if isinstance(verdict, Verdict):
        # The refusing limit's own fields, in place of the route's (see the guard's RateLimits).
        headers.update({k.decode(): v.decode() for k, v in rate_headers(verdict)})
    body = quota_problem_body(retry_after, violated, getattr(request.state, "request_id", None))
    return JSONResponse(body, status_code=429, media_type=PROBLEM_JSON, headers=headers)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = []
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ())]
        # Never echo a submitted secret: pydantic's messages may quote the input.
        message = "invalid value" if _SECRET_FIELDS & set(loc) else str(error.get("msg", ""))
        errors.append({"loc": loc, "msg": message, "type": error.get("type")})
    return validation_problem(request, errors)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    slug, title = _HTTP_SLUGS.get(exc.status_code, ("error", "Error"))
    detail = (
        exc.detail if isinstance(exc.detail, str) and exc.detail.lower() != title.lower() else None
    )
    headers = dict(exc.headers) if exc.headers else None
    return problem(request, exc.status_code, slug, title, detail, headers=headers)


async def _invalid_email(request: Request, exc: Exception) -> Response:
    # Every route that takes an address names its field ``email``; the address is
    # checked by the core (normalize_email), after the request model.
    return validation_problem(
        request, [{"loc": ["body", "email"], "msg": "not a valid email address"}]
    )


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(BastionError, _bastion_error)
    app.add_exception_handler(InvalidEmailError, _invalid_email)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
