"""Cross-site request forgery checks for cookie sessions, one step of the guard.

A state-changing request (any method but GET, HEAD and OPTIONS) in cookie mode, that
is without an ``Authorization`` header and with a session cookie or an
``X-CSRF-Token`` header (a cookie-mode login), is refused with 403 ``csrf-failed``
unless (OWASP CSRF Prevention Cheat Sheet; ASVS 3.5.1-3.5.3):

- ``Sec-Fetch-Site`` is not ``cross-site`` (Fetch Metadata, sent by every current
  browser; ``same-site`` passes only with an allowed ``Origin``);
- ``Origin``, when sent, is this site's own or one of the allowed CORS origins
  (``null``, sent by sandboxed frames and some redirects, is refused);
- the ``X-CSRF-Token`` header is present and equal to the CSRF cookie.

That the token is also the one signed for the request's session is checked where the
session is known: by the guard for requests it authenticates from the access cookie,
and by the login and refresh routes (:class:`bastion.fastapi.CookieTransport`).
Bearer-token clients are unaffected: a page on another site cannot set the
``Authorization`` header, and the browser never adds one by itself.

A refusal is logged as ``suspicious_activity`` (OWASP logging vocabulary:
``malicious_csrf``).
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection
from starlette.types import Scope, Send

from bastion.events import EventLog
from bastion.fastapi.middleware.rate_limit import context_of
from bastion.fastapi.problems import CSRF_DETAIL, send_problem
from bastion.fastapi.transports import CookieTransport
from bastion.net import TrustedProxies

__all__ = ["SAFE_METHODS", "CSRFCheck"]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL, lower-cased, as browsers send ``Origin``."""
    parts = urlsplit(url.strip())
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


class CSRFCheck:
    """The guard's cross-site check of cookie-mode requests (run by
    :class:`~bastion.fastapi.GuardMiddleware` after the rate limit, before the route)."""

    def __init__(
        self,
        *,
        transport: CookieTransport,
        events: EventLog,
        proxies: TrustedProxies,
        trusted_origins: Iterable[str] = (),
    ) -> None:
        """``trusted_origins``: other sites' origins allowed to send state-changing
        requests with the session cookies (the CORS allowlist and the public URL)."""
        self._transport = transport
        self._events = events
        self._proxies = proxies
        self._trusted = frozenset(origin_of(origin) for origin in trusted_origins)

    async def refuse(self, scope: Scope, send: Send) -> bool:
        """Answer a state-changing cookie-mode request that fails the check (and say so)."""
        if scope["method"] in SAFE_METHODS:
            return False
        connection = HTTPConnection(scope)
        if not self._transport.in_cookie_mode(connection):
            return False
        reason = self._refusal(connection)
        if reason is None:
            return False
        await self._refuse(scope, send, reason)
        return True

    def _refusal(self, connection: HTTPConnection) -> str | None:
        headers = connection.headers
        site = headers.get("sec-fetch-site", "").lower()
        origin = headers.get("origin")
        own = self._own_origins(connection)
        if site == "cross-site":
            return "request from another site (Sec-Fetch-Site: cross-site)"
        if origin is not None:
            if origin_of(origin) not in own | self._trusted:
                return "request from a foreign Origin"
        elif site == "same-site":
            return "request from a sibling site without an Origin"
        if self._transport.csrf_token(connection) is None:
            return "missing or mismatched X-CSRF-Token"
        return None

    @staticmethod
    def _own_origins(connection: HTTPConnection) -> frozenset[str]:
        host = connection.headers.get("host", "").lower()
        if not host:
            return frozenset()
        return frozenset({f"https://{host}", f"{connection.url.scheme}://{host}"})

    async def _refuse(self, scope: Scope, send: Send, reason: str) -> None:
        state = scope.setdefault("state", {})
        self._events.emit_soon(
            "suspicious_activity",
            context=context_of(scope, self._proxies),
            details=f"CSRF refused: {reason}",
            severity="high",
            category="malicious_csrf",
        )
        await send_problem(
            send,
            403,
            "csrf-failed",
            "CSRF check failed",
            CSRF_DETAIL,
            state.get("request_id"),
        )
