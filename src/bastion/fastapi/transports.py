"""How credentials travel: the bearer header, or cookies for browsers (the cookie mode).

The token strategies (JWT access tokens, rotating refresh tokens) do not change with
the transport; only where the client keeps them does.

Cookie mode keeps the token pair where page scripts cannot read it, and adds a CSRF
token that they can (OWASP Session Management and CSRF Prevention Cheat Sheets,
ASVS 3.3.1-3.3.4):

- ``__Host-bastion-access`` and ``__Host-bastion-refresh``: ``Secure``, ``HttpOnly``,
  ``SameSite=Strict``, ``Path=/``, no ``Domain`` (the ``__Host-`` prefix makes the
  browser refuse them otherwise, so no other host, sibling subdomains included, can
  set or overwrite them);
- ``__Host-bastion-csrf``: the same, but readable by the page's own scripts, which send
  it back in ``X-CSRF-Token`` on every state-changing request (signed double submit,
  bound to the session: :mod:`bastion.tokens.csrf`);
- ``__Host-bastion-csrf-login``: the pre-session token, good for a login only. It has a
  cookie of its own, so that fetching one (which any site can make a browser do by
  navigating to ``GET /auth/csrf``) never replaces a live session's token.

``secure=False`` (development over plain HTTP only; production refuses it) drops
``Secure`` and therefore the prefix, which browsers accept only with ``Secure``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import Scope

from bastion.accounts import TokenPair
from bastion.tokens import PRE_SESSION, CSRFTokens

__all__ = ["CSRF_HEADER", "CookieTransport", "bearer_token", "read_credential"]

CSRF_HEADER = "x-csrf-token"


def bearer_token(scope: Scope) -> tuple[bool, str | None]:
    """Whether the request has an ``Authorization`` header, and its bearer token.

    The first such header counts; another scheme, or ``Bearer`` without a token, gives
    no token (RFC 6750 §2.1). ``?access_token=`` is never read: RFC 6750 §2.3 is
    optional and leaks tokens into logs."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            token = credentials.strip()
            return True, token if scheme.lower() == "bearer" and token else None
    return False, None


def read_credential(
    scope: Scope, cookies: CookieTransport | None
) -> tuple[str, Literal["bearer", "cookie"]] | None:
    """The request's access token and its transport: the bearer header, else (in cookie
    mode, and only without an ``Authorization`` header) the access cookie."""
    has_header, token = bearer_token(scope)
    if has_header:
        return (token, "bearer") if token else None
    if cookies is not None:
        cookie = cookies.access_token(HTTPConnection(scope))
        if cookie:
            return cookie, "cookie"
    return None


@dataclass(frozen=True)
class _Names:
    access: str
    refresh: str
    csrf: str
    pre_session: str


class CookieTransport:
    """The cookie mode: sets, reads and clears the session cookies and the CSRF token."""

    def __init__(
        self, csrf: CSRFTokens, *, secure: bool = True, session_max_age: int = 30 * 86400
    ) -> None:
        """``session_max_age``: the longest a session lives (its absolute lifetime), for
        the CSRF cookie of a session when it is issued again outside a login."""
        prefix = "__Host-bastion-" if secure else "bastion-"
        self.names = _Names(
            f"{prefix}access", f"{prefix}refresh", f"{prefix}csrf", f"{prefix}csrf-login"
        )
        self.csrf = csrf
        self.secure = secure
        self.session_max_age = session_max_age

    # -- reading ----------------------------------------------------------------------

    def access_token(self, connection: HTTPConnection) -> str | None:
        return connection.cookies.get(self.names.access) or None

    def refresh_token(self, connection: HTTPConnection) -> str | None:
        return connection.cookies.get(self.names.refresh) or None

    def has_session(self, connection: HTTPConnection) -> bool:
        """Whether the request carries a session cookie (and so acts in cookie mode)."""
        cookies = connection.cookies
        return bool(cookies.get(self.names.access) or cookies.get(self.names.refresh))

    def in_cookie_mode(self, connection: HTTPConnection) -> bool:
        """Whether the request acts in cookie mode: no ``Authorization`` header, and a
        CSRF header (a cookie-mode login) or a session cookie."""
        headers = connection.headers
        if "authorization" in headers:
            return False
        return CSRF_HEADER in headers or self.has_session(connection)

    def csrf_token(self, connection: HTTPConnection) -> str | None:
        """The CSRF token of the header, when a CSRF cookie (the session's or the
        pre-session one) holds the same one; which session it is bound to is for the
        caller to check."""
        header = connection.headers.get(CSRF_HEADER)
        if not header:
            return None
        cookies = connection.cookies
        if header in (cookies.get(self.names.csrf), cookies.get(self.names.pre_session)):
            return header
        return None

    def csrf_valid(self, connection: HTTPConnection, session_id: str) -> bool:
        """The request's CSRF token (header and cookie alike) was issued for the session."""
        return self.csrf.valid(self.csrf_token(connection), session_id)

    # -- writing ----------------------------------------------------------------------

    def _set(
        self, response: Response, name: str, value: str, max_age: int, *, http_only: bool
    ) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            secure=self.secure,
            httponly=http_only,
            samesite="strict",
        )

    def issue_csrf(self, response: Response, binding: str, max_age: int | None = None) -> str:
        """Set a new CSRF cookie for the session ``binding`` and return the token, which
        the response body carries too."""
        token = self.csrf.issue(binding)
        age = self.session_max_age if max_age is None else max_age
        self._set(response, self.names.csrf, token, age, http_only=False)
        return token

    def issue_pre_session_csrf(self, response: Response) -> str:
        """Set a pre-session CSRF cookie (for the login only; an hour) and return it."""
        token = self.csrf.issue(PRE_SESSION)
        self._set(response, self.names.pre_session, token, 3600, http_only=False)
        return token

    def start_session(self, response: Response, pair: TokenPair, session_id: str) -> str:
        """Put a token pair into the cookies; return the session's new CSRF token."""
        self._set(response, self.names.access, pair.access_token, pair.expires_in, http_only=True)
        self._set(
            response,
            self.names.refresh,
            pair.refresh_token,
            pair.refresh_expires_in,
            http_only=True,
        )
        response.delete_cookie(
            self.names.pre_session, path="/", secure=self.secure, samesite="strict"
        )
        return self.issue_csrf(response, session_id, pair.refresh_expires_in)

    def end_session(self, response: Response) -> None:
        for name in (
            self.names.access,
            self.names.refresh,
            self.names.csrf,
            self.names.pre_session,
        ):
            response.delete_cookie(
                name, path="/", secure=self.secure, httponly=True, samesite="strict"
            )
