"""The OpenAPI schema documents every error as the RFC 9457 problem it is.

FastAPI documents a route's error responses with no body, and its 422 as
``application/json`` ``HTTPValidationError``; every error this service sends is an
``application/problem+json`` problem (API.md "Errors"). :func:`document_problems`
rewrites the generated schema once: each 4xx and 5xx response gets the problem media
type and schema (422 the validation problem, with ``errors``), and each operation that
takes a body documents what the layers under every route answer for it: 400 for a body
that cannot be decoded, 413 over the size cap, 415 for a media type the route does not
take (OWASP API9:2023: document the errors; clients and schema-driven tests rely on it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from bastion.fastapi.problems import PROBLEM_JSON

__all__ = [
    "PROBLEM_SCHEMA",
    "VALIDATION_PROBLEM_SCHEMA",
    "document_problems",
    "install_problem_schema",
]

_REF = "#/components/schemas/"
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
# What the layers under every route answer for a request body (RequestLimits,
# BodyLimit and the media type check; the framework's body decoding).
_BODY_ERRORS: dict[str, str] = {
    "400": "The body cannot be decoded (`bad-request`)",
    "413": "The body is larger than BASTION_MAX_BODY_BYTES (`payload-too-large`)",
    "415": "The body's media type is not one the route takes (`unsupported-media-type`)",
    "422": "Validation error (`validation-error`)",
}
_FRAMEWORK_SCHEMAS = ("HTTPValidationError", "ValidationError")
_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _is_error(status: str) -> bool:
    return status[:1] in {"4", "5"}


def document_problems(schema: dict[str, Any]) -> dict[str, Any]:
    """Rewrite ``schema`` (an OpenAPI document) in place so its errors are problems."""
    for item in schema.get("paths", {}).values():
        for method, operation in item.items():
            if method not in _METHODS:
                continue
            responses = operation.setdefault("responses", {})
            if "requestBody" in operation:
                for status, description in _BODY_ERRORS.items():
                    responses.setdefault(status, {"description": description})
            for status, response in responses.items():
                if _is_error(status):
                    name = "ValidationProblem" if status == "422" else "Problem"
                    response["content"] = {PROBLEM_JSON: {"schema": {"$ref": f"{_REF}{name}"}}}
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = PROBLEM_SCHEMA
    components["ValidationProblem"] = VALIDATION_PROBLEM_SCHEMA
    text = json.dumps(schema)
    for name in _FRAMEWORK_SCHEMAS:
        if f'"{_REF}{name}"' not in text:
            components.pop(name, None)  # the framework's 422 body, replaced above
    return schema


def install_problem_schema(app: FastAPI) -> None:
    """Make ``app.openapi()`` (and so ``/openapi.json``) document errors as problems."""
    generate: Callable[[], dict[str, Any]] = app.openapi
    documented: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if not documented:
            documented.update(document_problems(generate()))
        return documented

    app.openapi = openapi  # type: ignore[method-assign]
