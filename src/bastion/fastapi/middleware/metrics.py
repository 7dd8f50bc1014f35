"""Count every answered request by the guard's decision and the status class.

The outermost layer of the app, so it sees the final status, the last-resort 500 and
the refusals of every inner layer (hosts, rate limits, body caps) included. The guard
publishes its :class:`~bastion.authz.Decision` in ``scope["auth"]``; a request the guard
did not decide (an unknown path, a rate-limit or CSRF refusal) counts as ``none``. The
labels come from closed sets only: no path, address or user id (see
:mod:`bastion.metrics`).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion.fastapi.auth_result import guard_result
from bastion.metrics import Metrics

__all__ = ["MetricsMiddleware"]


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self._count = metrics.count_request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                result = guard_result(scope)
                decision = result.decision if result is not None else None
                self._count(decision.status if decision is not None else "none", message["status"])
            await send(message)

        await self.app(scope, receive, send_counted)
