"""One ``input_validation_failed`` event for each request to an audited route that is
refused for its input (OWASP Logging Vocabulary ``input_validation_fail``).

The code that refuses the input says so with :func:`~bastion.fastapi.problems.mark_input_refused`
(the 422 handlers, the 415 check, the body, JSON-shape and header caps); this middleware
logs the refusal once the response starts. Other 4xx answers on the same routes (a wrong
password, an invalid link) have their own events and are not marked, so each refusal
is logged exactly once. Only the location of the bad fields is logged, never a value.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion.events import EventLog
from bastion.fastapi.middleware.rate_limit import context_of
from bastion.fastapi.problems import INPUT_REFUSED
from bastion.net import TrustedProxies

__all__ = ["InputEventsMiddleware"]


class InputEventsMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        events: EventLog,
        proxies: TrustedProxies,
        prefixes: Iterable[str] = ("/auth/",),
    ) -> None:
        """``prefixes``: the paths whose refused input is logged (the auth routes)."""
        self.app = app
        self._events = events
        self._proxies = proxies
        self._prefixes = tuple(prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self._prefixes):
            await self.app(scope, receive, send)
            return

        async def logging_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state = scope.get("state", {})
                reason = state.get(INPUT_REFUSED)
                if reason is not None:
                    self._log(scope, message["status"], reason)
            await send(message)

        await self.app(scope, receive, logging_send)

    def _log(self, scope: Scope, status: int, reason: str) -> None:
        self._events.emit_soon(
            "input_validation_failed",
            context=context_of(scope, self._proxies),
            details=reason,
            status=status,
        )
