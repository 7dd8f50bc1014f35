"""Refuse request bodies over a size cap with 413, before and while they stream.

A declared ``Content-Length`` over the cap is refused before reading anything; a body
without one (chunked) is counted as it arrives and cut off at the cap (OWASP API4:2023).
One cap for every route, except the routes given their own (an upload route takes a
file larger than any JSON body), by method and path template.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion.fastapi.problems import mark_input_refused, send_problem

__all__ = ["BodyLimitMiddleware"]


class _TooLarge(HTTPException):
    """An HTTPException so the framework's body parsing passes it on as a 413."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"The request body exceeds {max_bytes} bytes.")


class BodyLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        overrides: Mapping[tuple[str, str], int] | None = None,
    ) -> None:
        """``overrides``: the cap of particular routes, keyed by method and path template,
        e.g. ``{("POST", "/tasks/{task_id}/attachments"): 10_551_296}``."""
        self.app = app
        self.max_bytes = max_bytes
        self._overrides = [
            (method, compile_path(path)[0], limit)
            for (method, path), limit in (overrides or {}).items()
        ]

    def limit_for(self, scope: Scope) -> int:
        """The cap of the route that ``scope`` addresses."""
        for method, regex, limit in self._overrides:
            if scope["method"] == method and regex.match(scope["path"]):
                return limit
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.limit_for(scope)
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = max_bytes + 1
                if declared > max_bytes:
                    await self._refuse(scope, send, max_bytes)
                    return
        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    raise _TooLarge(max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if response_started:
                raise
            await self._refuse(scope, send, max_bytes)

    async def _refuse(self, scope: Scope, send: Send, max_bytes: int) -> None:
        mark_input_refused(scope, f"request body larger than {max_bytes} bytes")
        await send_problem(
            send,
            413,
            "payload-too-large",
            "Payload too large",
            f"The request body exceeds {max_bytes} bytes.",
            scope.get("state", {}).get("request_id"),
            close=True,
        )
