"""Request id, security headers and the last-resort 500, as one pure ASGI middleware.

It sits outside the routing and exception middleware, so even an unhandled exception
becomes an RFC 9457 problem that carries the request id and the security headers, and
leaks nothing: the traceback goes to the server log under the same request id
(ASVS 16.5.1, RFC 9457 §5).
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion.fastapi.problems import send_problem

__all__ = ["RequestContextMiddleware"]

_logger = logging.getLogger("bastion.errors")
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")

_API_HEADERS: list[tuple[bytes, bytes]] = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-site"),
    (b"permissions-policy", b"geolocation=(), camera=(), microphone=()"),
]
_JSON_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
# The docs pages: every script and style is our own origin's (docs/api-docs.md); inline
# styles for Swagger UI's and ReDoc's style attributes and <style> elements, data: images
# for their icons, a blob: worker for ReDoc's search. No inline or remote script.
_DOCS_CSP = (
    b"content-security-policy",
    b"default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    b"img-src 'self' data:; connect-src 'self'; worker-src blob:; frame-ancestors 'none'; "
    b"base-uri 'none'; form-action 'self'",
)
# The pages emailed links open: our own script only, which posts to this origin.
_PAGE_CSP = (
    b"content-security-policy",
    b"default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; "
    b"form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
)
_NO_STORE = (b"cache-control", b"no-store")
_HSTS = (b"strict-transport-security", b"max-age=63072000; includeSubDomains")


def new_request_id() -> str:
    return secrets.token_hex(12)


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        docs_paths: Iterable[str] = (),
        page_paths: Iterable[str] = (),
        hsts: bool = False,
    ) -> None:
        """``docs_paths``: prefixes of the API docs (their CSP admits their own assets);
        ``page_paths``: exact paths of HTML pages served with a script of our own."""
        self.app = app
        self._docs_paths = tuple(docs_paths)
        self._page_paths = frozenset(page_paths)
        self._hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                if _SAFE_REQUEST_ID.fullmatch(candidate):
                    request_id = candidate
                break
        scope.setdefault("state", {})["request_id"] = request_id
        is_docs = scope["path"].startswith(self._docs_paths) if self._docs_paths else False
        is_page = scope["method"] == "GET" and scope["path"] in self._page_paths
        csp = _DOCS_CSP if is_docs else _PAGE_CSP if is_page else _JSON_CSP
        extra = [*_API_HEADERS, csp]
        if not is_docs:
            extra.append(_NO_STORE)
        if self._hsts:
            extra.append(_HSTS)
        extra.append((b"x-request-id", request_id.encode()))
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                own = {name for name, _ in extra}
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() not in own and k.lower() != b"server"
                ]
                if is_docs and not any(k.lower() == b"cache-control" for k, _ in headers):
                    headers.append(_NO_STORE)  # only the docs' assets say they may be cached
                message["headers"] = headers + extra
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            _logger.exception("unhandled error (request_id=%s)", request_id)
            if started:
                raise
            await send_problem(
                send_with_headers,
                500,
                "internal-error",
                "Internal server error",
                None,
                request_id,
            )
