"""FastAPI dependencies: the request's security context and the authenticated caller."""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from bastion.accounts import AccountService, Principal
from bastion.errors import InvalidTokenError
from bastion.events import EventLog, RequestContext
from bastion.net import TrustedProxies

__all__ = ["Guard"]

# auto_error=False: a missing token is our 401 problem, not FastAPI's plain 401. Tokens are
# read from the Authorization header only; ``?access_token=`` is never looked at (RFC 6750
# §2.3 is optional and leaks tokens into logs).
_bearer = OAuth2PasswordBearer(tokenUrl="/auth/token", auto_error=False)


class Guard:
    """What routes need to know about the caller: who it is and where it came from."""

    def __init__(
        self, service: AccountService, events: EventLog, proxies: TrustedProxies | None = None
    ) -> None:
        self.service = service
        self.events = events
        self.proxies = proxies or TrustedProxies()

    def context(self, request: Request) -> RequestContext:
        cached = getattr(request.state, "security_context", None)
        if isinstance(cached, RequestContext):
            return cached
        peer = request.client.host if request.client else None
        ip = self.proxies.client_ip(peer, request.headers.get("x-forwarded-for"))
        context = RequestContext(
            ip_address=ip,
            endpoint=request.url.path,
            method=request.method,
            request_id=getattr(request.state, "request_id", None),
        )
        request.state.security_context = context
        return context

    @property
    def principal(self):  # type: ignore[no-untyped-def]  # a FastAPI dependency
        async def authenticated(
            request: Request, token: str | None = Depends(_bearer)
        ) -> Principal:
            context = self.context(request)
            try:
                if not token:
                    raise InvalidTokenError("no bearer token")
                principal = await self.service.authenticate(token)
            except InvalidTokenError as exc:
                await self.events.emit(
                    "auth_failure", context=context, details=f"access token: {exc.reason}"
                )
                raise
            request.state.principal = principal
            return principal

        return authenticated
