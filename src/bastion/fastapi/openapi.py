"""The OpenAPI schema documents every answer the service can give, errors as problems.

FastAPI documents a route's error responses with no body, and its 422 as
``application/json`` ``HTTPValidationError``; and it knows nothing of what the layers in
front of the routes answer. Every error this service sends is an
``application/problem+json`` problem (API.md "Errors"). :func:`install_problem_schema`
rewrites the generated schema once, when it is first asked for (so after the app has all
its middleware):

- each operation documents what the layers under it can answer, read from the app's own
  middleware (:func:`layer_answers`): 429 with ``Retry-After``, ``RateLimit`` and
  ``RateLimit-Policy`` when the rate limiter is installed; 431, and 503 for a request that
  runs out of time, under the request caps; 413 with the route's own cap where a body is
  taken; 403 for a cookie-mode write that fails the CSRF check; 400 for a foreign
  ``Host`` when hosts are allowlisted;
- and what the handlers answer for every route: 503 with ``Retry-After`` (a store that
  does not answer, a saturated hashing pool), and 400, 415 and 422 for a body that cannot
  be decoded, is of a media type the route does not take, or fails validation;
- each 4xx and 5xx response gets the problem media type and schema (422 the validation
  problem, with ``errors``), and each 429 and 503 its ``Retry-After``.

OWASP API9:2023: document the errors; clients and schema-driven tests rely on them
(docs/fuzzing.md runs Schemathesis against this schema with the limits at their defaults).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from starlette.middleware import Middleware

from bastion.fastapi.guard_middleware import GuardMiddleware
from bastion.fastapi.middleware import (
    AllowedHostsMiddleware,
    BodyLimitMiddleware,
    RequestLimitsMiddleware,
)
from bastion.fastapi.middleware.csrf import SAFE_METHODS
from bastion.fastapi.problems import PROBLEM_JSON

__all__ = [
    "PROBLEM_SCHEMA",
    "RESPONSE_HEADERS",
    "VALIDATION_PROBLEM_SCHEMA",
    "Answer",
    "document_problems",
    "install_problem_schema",
    "layer_answers",
]

_REF = "#/components/schemas/"
_HEADER_REF = "#/components/headers/"
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An RFC 9457 problem; extension members vary by problem type.",
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {
            "type": "string",
            "format": "uri-reference",
            "description": "`/problems/<slug>`, or a registered problem type URI",
        },
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "request_id": {
            "anyOf": [{"type": "string"}, {"type": "null"}],
            "description": "Also in the `X-Request-ID` header and the server log",
        },
    },
    "additionalProperties": True,
}
VALIDATION_PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "ValidationProblem",
    "description": "The `validation-error` problem: what is wrong, and where.",
    "allOf": [{"$ref": f"{_REF}Problem"}],
    "type": "object",
    "required": ["errors"],
    "properties": {
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["loc", "msg"],
                "properties": {
                    "loc": {"type": "array", "items": {"type": "string"}},
                    "msg": {"type": "string"},
                    "type": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                },
            },
        }
    },
}
# The fields as the guard's rate limits write them (draft-ietf-httpapi-ratelimit-headers-10:
# Structured Fields lists of strings with parameters; see problems.rate_headers).
_POLICY = r'"[^"\\]+";q=[0-9]+;w=[0-9]+'
RESPONSE_HEADERS: dict[str, dict[str, Any]] = {
    "Retry-After": {
        "description": "Seconds to wait before sending the request again (RFC 9110 §10.2.3)",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    },
    "RateLimit": {
        "description": (
            "The policy closest to its limit: `r` requests remain, and its quota is whole "
            "again in `t` seconds (draft-ietf-httpapi-ratelimit-headers-10)"
        ),
        "required": True,
        "schema": {
            "type": "string",
            "pattern": r'^"[^"\\]+";r=[0-9]+;t=[0-9]+$',
            "examples": ['"writes";r=0;t=6'],
        },
    },
    "RateLimit-Policy": {
        "description": (
            "Every policy that applied: a quota of `q` requests in a window of `w` "
            "seconds (draft-ietf-httpapi-ratelimit-headers-10)"
        ),
        "required": True,
        "schema": {
            "type": "string",
            "pattern": f"^{_POLICY}(, {_POLICY})*$",
            "examples": ['"ip";q=300;w=60, "writes";q=10;w=60'],
        },
    },
}
# Whoever sends them, these statuses carry these headers (every 429 and 503 the service
# sends says when to try again).
_STATUS_HEADERS: dict[str, tuple[str, ...]] = {"429": ("Retry-After",), "503": ("Retry-After",)}
_FRAMEWORK_SCHEMAS = ("HTTPValidationError", "ValidationError")
_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}

# Which operations an answer applies to: (METHOD, path template, operation object).
Applies = Callable[[str, str, Mapping[str, Any]], bool]


def _every(method: str, path: str, operation: Mapping[str, Any]) -> bool:
    return True


def _with_body(method: str, path: str, operation: Mapping[str, Any]) -> bool:
    return "requestBody" in operation


def _unsafe(method: str, path: str, operation: Mapping[str, Any]) -> bool:
    return method not in SAFE_METHODS


@dataclass(frozen=True)
class Answer:
    """A response that something other than the route itself may send: its status, what
    it means (lower case, as a clause), the headers it carries (names of
    :data:`RESPONSE_HEADERS`) and the operations it applies to."""

    status: int
    description: str
    headers: tuple[str, ...] = ()
    applies: Applies = _every


# What the problem handlers and the app-wide media type check answer for any route.
_HANDLER_ANSWERS = (
    Answer(
        503,
        "a store the service needs (its database, Redis) does not answer "
        "(`service-unavailable`), or the password-hashing pool is saturated (`service-busy`)",
        ("Retry-After",),
    ),
    Answer(400, "the body cannot be decoded (`bad-request`)", applies=_with_body),
    Answer(
        415,
        "the body's media type is not one the route takes (`unsupported-media-type`)",
        applies=_with_body,
    ),
    Answer(422, "validation error (`validation-error`)", applies=_with_body),
)


def _body_answers(options: Mapping[str, Any]) -> list[Answer]:
    """413 where a body is taken, with the cap of each route (``overrides``) or the one
    for every other route (``max_bytes``)."""
    overrides: Mapping[tuple[str, str], int] = options.get("overrides") or {}

    def route(key: tuple[str, str]) -> Applies:
        return lambda method, path, operation: (
            (method, path) == key and _with_body(method, path, operation)
        )

    def other(method: str, path: str, operation: Mapping[str, Any]) -> bool:
        return (method, path) not in overrides and _with_body(method, path, operation)

    answers = [
        Answer(
            413, f"the body is larger than {limit} bytes (`payload-too-large`)", applies=route(key)
        )
        for key, limit in overrides.items()
    ]
    cap = options["max_bytes"]
    answers.append(
        Answer(413, f"the body is larger than {cap} bytes (`payload-too-large`)", applies=other)
    )
    return answers


def _guard_answers(options: Mapping[str, Any]) -> list[Answer]:
    """The guard's own refusals: its rate limits' (when on), then its CSRF check's."""
    answers = []
    limits = options.get("rate_limits")
    if limits is not None:
        answers.append(
            Answer(
                429,
                "too many requests: a rate limit refused this one, or the caller is blocked "
                "after repeated refusals (`quota-exceeded`, with its `violated-policies`)",
                ("Retry-After", "RateLimit", "RateLimit-Policy"),
            )
        )
        if limits.fail_closed:
            answers.append(
                Answer(503, "the rate limits' shared store does not answer", ("Retry-After",))
            )
    if options.get("csrf") is not None:
        answers.append(
            Answer(403, "cookie mode: the CSRF check failed (`csrf-failed`)", applies=_unsafe)
        )
    return answers


def _answers_of(layer: Middleware) -> list[Answer]:
    cls, options = layer.cls, layer.kwargs
    if not isinstance(cls, type):
        return []
    if issubclass(cls, GuardMiddleware):
        return _guard_answers(options)
    if issubclass(cls, RequestLimitsMiddleware):
        return [
            Answer(
                431,
                f"the request's header fields are over {options['max_header_bytes']} bytes, or "
                "too many (`headers-too-large`)",
            ),
            Answer(
                503,
                f"the request did not finish within {options['timeout']:g} s (`request-timeout`)",
                ("Retry-After",),
            ),
        ]
    if issubclass(cls, BodyLimitMiddleware):
        return _body_answers(options)
    if issubclass(cls, AllowedHostsMiddleware):
        return [Answer(400, "the `Host` header names no host of this service (`invalid-host`)")]
    return []


def layer_answers(middleware: Iterable[Middleware]) -> list[Answer]:
    """What the handlers and the given middleware (``app.user_middleware``) may answer:
    a layer that is not installed documents nothing (no 429 when limits are off)."""
    answers = list(_HANDLER_ANSWERS)
    for layer in middleware:
        answers.extend(_answers_of(layer))
    return answers


def _is_error(status: str) -> bool:
    return status[:1] in {"4", "5"}


def _sentence(clauses: Iterable[str]) -> str:
    text = "; ".join(dict.fromkeys(clauses))
    return text[:1].upper() + text[1:]


def _document_answers(
    method: str, path: str, operation: dict[str, Any], answers: Iterable[Answer]
) -> None:
    """Add each answer that applies to ``operation``: a status it documents keeps its own
    description and gains the answer's headers."""
    responses = operation.setdefault("responses", {})
    applying: dict[str, list[Answer]] = {}
    for answer in answers:
        if answer.applies(method, path, operation):
            applying.setdefault(str(answer.status), []).append(answer)
    for status, given in applying.items():
        response = responses.setdefault(
            status, {"description": _sentence(a.description for a in given)}
        )
        names = [name for answer in given for name in answer.headers]
        if names:
            headers = response.setdefault("headers", {})
            for name in dict.fromkeys(names):
                headers[name] = {"$ref": f"{_HEADER_REF}{name}"}
    operation["responses"] = dict(sorted(responses.items()))


def document_problems(
    schema: dict[str, Any], answers: Iterable[Answer] = _HANDLER_ANSWERS
) -> dict[str, Any]:
    """Rewrite ``schema`` (an OpenAPI document) in place: every operation documents the
    ``answers`` that apply to it, and its errors are problems."""
    answers = list(answers)
    used: set[str] = set()
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            if method not in _METHODS:
                continue
            _document_answers(method.upper(), path, operation, answers)
            for status, response in operation["responses"].items():
                if not _is_error(status):
                    continue
                name = "ValidationProblem" if status == "422" else "Problem"
                response["content"] = {PROBLEM_JSON: {"schema": {"$ref": f"{_REF}{name}"}}}
                for header in _STATUS_HEADERS.get(status, ()):
                    response.setdefault("headers", {}).setdefault(
                        header, {"$ref": f"{_HEADER_REF}{header}"}
                    )
            used.update(
                ref["$ref"].removeprefix(_HEADER_REF)
                for response in operation["responses"].values()
                for ref in response.get("headers", {}).values()
                if ref.get("$ref", "").startswith(_HEADER_REF)
            )
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    schemas["ValidationProblem"] = VALIDATION_PROBLEM_SCHEMA
    if used:
        components.setdefault("headers", {}).update(
            {name: RESPONSE_HEADERS[name] for name in sorted(used)}
        )
    text = json.dumps(schema)
    for name in _FRAMEWORK_SCHEMAS:
        if f'"{_REF}{name}"' not in text:
            schemas.pop(name, None)  # the framework's 422 body, replaced above
    return schema


def install_problem_schema(app: FastAPI) -> None:
    """Make ``app.openapi()`` (and so ``/openapi.json``) document errors as problems, and
    what the app's own middleware may answer (read when the schema is first generated,
    once every middleware has been added)."""
    generate: Callable[[], dict[str, Any]] = app.openapi
    documented: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if not documented:
            documented.update(document_problems(generate(), layer_answers(app.user_middleware)))
        return documented

    app.openapi = openapi  # type: ignore[method-assign]
