"""Hard caps on what one request may cost: header size, time, JSON shape (OWASP API4).

- Headers over ``max_header_bytes`` in all (or over 100 fields) answer 431 before
  anything runs (the server's own limit should be set near it too).
- A request that runs longer than ``timeout`` seconds is cancelled and answers 503
  ``request-timeout``; its database transaction rolls back with the cancellation.
- A JSON body nested deeper than ``max_json_depth`` or with an array or object of more
  than ``max_json_items`` members answers 422 before any route parses it, so a small
  hostile body cannot cost deep recursion or large allocations downstream.

- A JSON body outside I-JSON (RFC 7493) answers 422 too: an object that names a member
  twice (§2.3; parsers disagree on which value wins, so a check and a use may see two
  different bodies: ASVS 1.5.3, "JSON interoperability"), a string with a lone
  surrogate (§2.1; it has no UTF-8 form, so it could be neither stored nor answered),
  or ``NaN``/``Infinity``, which Python's parser takes but RFC 8259 §6 does not; so
  does a body that is not UTF-8 (§8.1), which the route's parser might read otherwise.

The JSON body is parsed here once to be measured and then passed on unchanged (the
route parses it again): bodies are capped at 1 MiB before this runs, and requests
without a JSON body cost nothing.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion.fastapi.problems import (
    mark_input_refused,
    problem_body,
    send_problem,
    send_problem_body,
)

__all__ = ["JSONLimitMiddleware", "RequestLimitsMiddleware", "json_shape_error"]

_MAX_HEADER_FIELDS = 100
_SURROGATE = re.compile(r"[\ud800-\udfff]")


class RequestLimitsMiddleware:
    def __init__(self, app: ASGIApp, *, max_header_bytes: int, timeout: float) -> None:
        self.app = app
        self.max_header_bytes = max_header_bytes
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = scope.get("state", {}).get("request_id")
        headers = scope["headers"]
        size = sum(len(name) + len(value) + 4 for name, value in headers)
        if size > self.max_header_bytes or len(headers) > _MAX_HEADER_FIELDS:
            mark_input_refused(scope, "request headers too large")
            await send_problem(
                send,
                431,
                "headers-too-large",
                "Request header fields too large",
                f"The request headers exceed {self.max_header_bytes} bytes or "
                f"{_MAX_HEADER_FIELDS} fields.",
                request_id,
                close=True,
            )
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            async with asyncio.timeout(self.timeout):
                await self.app(scope, receive, tracking_send)
        except TimeoutError:
            if started:
                raise
            await send_problem(
                send,
                503,
                "request-timeout",
                "Request took too long",
                f"The request did not finish within {self.timeout:g} s.",
                request_id,
                headers=[(b"retry-after", b"1")],
            )


def json_shape_error(value: Any, *, max_depth: int, max_items: int) -> str | None:
    """Why ``value`` is too deep or too wide, or None; iterative, so never recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > max_depth:
                return f"JSON nested deeper than {max_depth} levels"
            if len(node) > max_items:
                return f"a JSON array or object has more than {max_items} members"
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)
    return None


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            # str.strip as the framework does: it also strips NBSP and NEL.
            media = value.decode("latin-1").split(";")[0].strip().lower()
            return bool(media == "application/json" or media.endswith("+json"))
    return False


class JSONLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_depth: int, max_items: int) -> None:
        self.app = app
        self.max_depth = max_depth
        self.max_items = max_items

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        chunks = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message]), send)  # a disconnect: pass it on
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        reason = self._check(body)
        if reason is not None:
            mark_input_refused(scope, f"invalid JSON body: {reason}")
            await _send_validation_problem(send, reason, scope.get("state", {}).get("request_id"))
            return
        await self.app(
            scope,
            _replay([{"type": "http.request", "body": body, "more_body": False}], receive),
            send,
        )

    def _check(self, body: bytes) -> str | None:
        if not body:
            return None
        # RFC 8259 §8.1: UTF-8, no byte order mark. The framework's parser would also
        # read UTF-16, UTF-32, a BOM and encoded surrogates, and so see a body other
        # than the one checked here: those are refused instead.
        if json.detect_encoding(body) != "utf-8":
            return "the body is not UTF-8"
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return "the body is not UTF-8"
        try:
            value = json.loads(text, object_pairs_hook=_unique_members, parse_constant=_no_constant)
        except RecursionError:
            return f"JSON nested deeper than {self.max_depth} levels"
        except _NotIJSONError as exc:
            return str(exc)
        except ValueError:
            return None  # not JSON: the route answers its own validation error
        shape = json_shape_error(value, max_depth=self.max_depth, max_items=self.max_items)
        return shape or _lone_surrogate_error(value)


class _NotIJSONError(ValueError):
    """The body parses, but is not I-JSON (RFC 7493)."""


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members = dict(pairs)
    if len(members) != len(pairs):
        raise _NotIJSONError("a JSON object has the same member name twice")
    return members


def _no_constant(name: str) -> Any:
    raise _NotIJSONError(f"{name} is not a JSON number")


def _lone_surrogate_error(value: Any) -> str | None:
    """Why a string (or member name) of ``value`` is not Unicode text, or None."""
    stack: list[Any] = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, str) and _SURROGATE.search(node):
            return "a JSON string has a lone surrogate (\\uD800-\\uDFFF) escape"
    return None


def _replay(messages: list[Message], then: Receive | None = None) -> Receive:
    queue = list(messages)

    async def receive() -> Message:
        if queue:
            return queue.pop(0)
        if then is not None:
            return await then()  # after the body: wait for a disconnect
        return {"type": "http.disconnect"}

    return receive


async def _send_validation_problem(send: Send, reason: str, request_id: str | None) -> None:
    body = problem_body(
        422,
        "validation-error",
        "Validation error",
        "The request is not valid; see errors.",
        request_id,
        errors=[{"loc": ["body"], "msg": reason, "type": "json_shape"}],
    )
    await send_problem_body(send, body)
