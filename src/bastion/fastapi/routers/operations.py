"""``GET /healthz`` and ``GET /readyz``: the probes of a load balancer or orchestrator."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse

from bastion.errors import DatabaseUnavailableError
from bastion.fastapi.dependencies import Guard
from bastion.fastapi.problems import problem
from bastion.runtime import Security
from bastion.stores.sql import ping

__all__ = ["operations_router"]

_logger = logging.getLogger("bastion")


def operations_router(guard: Guard, security: Security) -> APIRouter:
    router = APIRouter(tags=["operations"])
    probe = [guard.public("liveness and readiness probes")]

    @router.get("/healthz", summary="The process is up", dependencies=probe)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/readyz",
        summary="The database (and Redis) answer",
        responses={503: {"description": "A dependency does not answer"}},
        dependencies=probe,
    )
    async def readyz(request: Request) -> Any:
        checks = {
            "database": await _database(security),
            "revocation_store": await _revocation_store(security),
        }
        if all(value == "ok" for value in checks.values()):
            return JSONResponse({"status": "ok", "checks": checks})
        down = ", ".join(name for name, value in checks.items() if value != "ok")
        return problem(
            request,
            503,
            "service-unavailable",
            "Service unavailable",
            f"Not ready: {down.replace('_', ' ')} unavailable.",
            headers={"Retry-After": "5"},
            checks=checks,
        )

    return router


async def _database(security: Security) -> str:
    engine = security.stores.engine
    if engine is None:  # in-process stores (memory://): nothing to reach
        return "ok"
    try:
        await ping(engine)
    except DatabaseUnavailableError:  # the engine logs the outage, once
        return "unavailable"
    except Exception:
        _logger.exception("readiness: database")
        return "unavailable"
    return "ok"


async def _revocation_store(security: Security) -> str:
    try:
        return "ok" if await security.stores.revocation.ping() else "unavailable"
    except Exception as exc:  # a Redis that does not answer: no traceback per probe
        _logger.warning("readiness: revocation store: %s", type(exc).__name__)
        return "unavailable"
