"""415 for a request body of a type the route does not take.

Each route's accepted media types come from its declaration: a JSON body model takes
``application/json`` only; a form takes ``application/x-www-form-urlencoded`` (or
``multipart/form-data``, which File parameters require); a route that reads its body
itself declares its types in ``openapi_extra["requestBody"]["content"]``; a route
without a body takes at most an empty JSON body. Nothing is guessed from the bytes.

Refusing ``text/plain``, form and multipart bodies on JSON routes also closes the
"simple request" path of cross-site forms (OWASP CSRF Prevention Cheat Sheet,
ASVS 3.5.2; OWASP API8:2023 "restrict content types").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import Request, params
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from bastion.fastapi.problems import mark_input_refused

__all__ = ["JSON", "accepted_media_types", "media_type_refusal", "require_declared_media_type"]

JSON = "application/json"
_FORM = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
_FILE = frozenset({"multipart/form-data"})
_JSON_ONLY = frozenset({JSON})


def accepted_media_types(route: Any) -> frozenset[str]:
    """The media types a route's request body may have."""
    if not isinstance(route, APIRoute):
        return _JSON_ONLY
    declared = (route.openapi_extra or {}).get("requestBody", {}).get("content")
    if declared:
        return frozenset(str(media).lower() for media in declared)
    field = route.body_field
    if field is None:
        return _JSON_ONLY
    if isinstance(field.field_info, params.File):
        return _FILE
    if isinstance(field.field_info, params.Form):
        return _FORM
    return _JSON_ONLY


def media_type_refusal(headers: Mapping[str, str], accepted: frozenset[str]) -> str | None:
    """Why a request with these headers has a body of a type outside ``accepted`` (the
    415's detail), or None when it has no body or one of those types."""
    length = headers.get("content-length")
    if "transfer-encoding" not in headers and (length is None or length.strip() == "0"):
        return None
    media, _, parameters = headers.get("content-type", "").partition(";")
    media = media.strip().lower()
    if media in accepted and (media != JSON or _utf8(parameters)):
        return None
    return f"This route takes {' or '.join(sorted(accepted))} (UTF-8 for JSON)."


async def require_declared_media_type(request: Request) -> None:
    """A dependency refusing a body whose ``Content-Type`` the route does not take, for
    apps without the guard (whose body layer checks the same from its route match).

    Raises:
        HTTPException: 415, naming the types the route takes.
    """
    refusal = media_type_refusal(request.headers, accepted_media_types(request.scope.get("route")))
    if refusal is None:
        return
    mark_input_refused(request, "unsupported media type")
    raise HTTPException(415, detail=refusal)


def _utf8(parameters: str) -> bool:
    """JSON is UTF-8 (RFC 8259 §8.1); a ``charset`` parameter may only say so."""
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in {
            "utf-8",
            "utf8",
        }:
            return False
    return True
