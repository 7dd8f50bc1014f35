"""Refuse request bodies over a size cap with 413, before and while they stream.

A declared ``Content-Length`` over the cap is refused before reading anything; a body
without one (chunked) is counted as it arrives and cut off at the cap (OWASP API4:2023).
One cap for every route, except the routes given their own (an upload route takes a
file larger than any JSON body), by method and path template.

The route is the one the guard matched (``scope["auth"]``); the same layer refuses a
body of a media type that route does not take (415,
:func:`~bastion.fastapi.media_types.media_type_refusal`). Both stay in this layer, apart
from the guard's: they must answer inside the request timeout and the input events,
and the count goes on while the route reads the body.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion.fastapi.auth_result import guard_result
from bastion.fastapi.media_types import media_type_refusal
from bastion.fastapi.problems import mark_input_refused, send_problem

__all__ = ["BodyLimitMiddleware"]


# RFC 9112 §6.3: an HTTP/1.x request with neither header has no body (the server reads
# what follows as the next request). HTTP/2 and 3 may send one without either.
_UNFRAMED_IS_EMPTY = frozenset({"1.0", "1.1"})


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
        self._overrides = dict(overrides or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        result = guard_result(scope)
        entry = result.route if result is not None else None
        max_bytes = self.max_bytes
        if entry is not None:
            max_bytes = self._overrides.get((scope["method"], entry.path), max_bytes)
        framed = False  # a Content-Length or Transfer-Encoding announces a body
        for name, value in scope["headers"]:
            if name == b"content-length":
                framed = True
                try:
                    declared = int(value)
                except ValueError:
                    declared = max_bytes + 1
                if declared > max_bytes:
                    await self._refuse(scope, send, max_bytes)
                    return
            elif name == b"transfer-encoding":
                framed = True
        if entry is not None and entry.media_types:
            refusal = media_type_refusal(Headers(scope=scope), entry.media_types)
            if refusal is not None:
                mark_input_refused(scope, "unsupported media type")
                request_id = scope["state"].get("request_id")
                await send_problem(
                    send,
                    415,
                    "unsupported-media-type",
                    "Unsupported media type",
                    refusal,
                    request_id,
                )
                return
        if not framed and scope.get("http_version") in _UNFRAMED_IS_EMPTY:
            await self.app(scope, receive, send)  # no body to count
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
