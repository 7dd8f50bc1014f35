"""CORS for an explicit list of browser origins: Starlette's middleware, refusals as problems.

Only the origins listed (``BASTION_CORS_ORIGINS``, empty by default: no cross-origin
browser access at all) get ``Access-Control-Allow-Origin``, each its own value; an
unlisted ``Origin`` is never reflected. Credentials (the cookie mode) are allowed only
for a list without ``*``, so ``*`` never goes with credentials (Fetch standard, CORS
protocol; OWASP API8:2023). A refused preflight is a 403 problem, not Starlette's
plain-text 400.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware as _StarletteCORS
from starlette.responses import Response
from starlette.types import ASGIApp

from bastion.fastapi.problems import PROBLEM_JSON, problem_body
from bastion.fastapi.transports import CSRF_HEADER

__all__ = ["CORSMiddleware"]

_METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE")
_HEADERS = ("Authorization", "Content-Type", CSRF_HEADER, "X-Request-ID")
# What a script of an allowed origin may read besides the CORS-safelisted fields.
_EXPOSED = ("RateLimit", "RateLimit-Policy", "Retry-After", "WWW-Authenticate", "X-Request-ID")


class CORSMiddleware(_StarletteCORS):
    def __init__(self, app: ASGIApp, *, origins: Sequence[str], max_age: int = 600) -> None:
        super().__init__(
            app,
            allow_origins=list(origins),
            allow_methods=_METHODS,
            allow_headers=_HEADERS,
            allow_credentials="*" not in origins,
            expose_headers=_EXPOSED,
            max_age=max_age,
        )

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        refused = bytes(response.body).decode(errors="replace").removeprefix("Disallowed CORS ")
        body = problem_body(
            403,
            "cors-refused",
            "Cross-origin request refused",
            f"Not allowed for this origin: {refused}.",
            None,
        )
        headers = {
            k: v for k, v in response.headers.items() if k.lower().startswith(("access-", "vary"))
        }
        return Response(json.dumps(body), 403, headers=headers, media_type=PROBLEM_JSON)
