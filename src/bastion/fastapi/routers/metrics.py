"""``GET /metrics``: the Prometheus text exposition of one app's :class:`Metrics`.

The metrics say how the service is attacked and how it holds up (refusals, failed
logins, queue depths), so they are no public page in production (API.md
"Operations"). With ``BASTION_METRICS_TOKEN`` set, a scrape must send
``Authorization: Bearer <token>``, as Prometheus does with ``authorization`` in its
scrape config; the token is its own credential, so the route is public to the guard
and checks the token itself, compared in constant time (OWASP Authentication Cheat
Sheet; RFC 6750 §3 for the 401 answer). Whether the route exists at all is the app's
choice (``BastionSettings.metrics_access``): never served in production without a token.
"""

# No ``from __future__ import annotations`` here (FastAPI resolves signatures at runtime).

import hmac
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from bastion.authz import Decision
from bastion.fastapi.auth_result import record_decision
from bastion.fastapi.dependencies import Guard
from bastion.fastapi.problems import problem
from bastion.metrics import Metrics

__all__ = ["metrics_router"]

_CHALLENGE = 'Bearer realm="bastion-metrics", error="invalid_token"'


def _bearer_matches(authorization: str | None, token: bytes) -> bool:
    """Whether an ``Authorization`` header value carries ``token`` as a bearer token.

    The comparison takes the same time wherever the first difference is (no timing
    oracle on the token); the scheme is case-insensitive (RFC 9110 §11.1)."""
    scheme, _, presented = (authorization or "").partition(" ")
    presented = presented.strip()
    if scheme.lower() != "bearer" or not presented or not token:
        return False
    # Starlette decoded the header as Latin-1: this gives back the bytes sent.
    return hmac.compare_digest(presented.encode("latin-1", "replace"), token)


def metrics_router(guard: Guard, metrics: Metrics, *, token: str | None = None) -> APIRouter:
    """The route serving ``metrics``; with ``token``, only to a scrape that sends it."""
    router = APIRouter(tags=["operations"])
    expected = token.encode("utf-8") if token is not None else None
    note = "the metrics token guards it when one is set; else public (development only)"

    @router.get(
        "/metrics",
        dependencies=[guard.public(note)],
        summary="Prometheus metrics (text exposition format)",
        response_class=Response,
        responses={
            200: {
                "description": "The metrics, in the Prometheus text format",
                "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
            },
            401: {"description": "The metrics token is missing or wrong"},
        },
    )
    async def metrics_text(request: Request) -> Any:
        if expected is not None and not _bearer_matches(
            request.headers.get("authorization"), expected
        ):
            record_decision(
                request, Decision("deny", "metrics token missing or wrong", http_status=401)
            )
            guard.events.emit_soon(
                "auth_failure",
                context=guard.context(request),
                details="metrics token missing or wrong",
            )
            return problem(
                request,
                401,
                "invalid-token",
                "Invalid token",
                "The metrics token is missing or wrong.",
                headers={"WWW-Authenticate": _CHALLENGE},
            )
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return router
