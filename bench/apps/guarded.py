"""(2), (3) The same handler behind Bastion's whole guard: the task service's app (its
middleware: metrics, request id and headers, hosts, rate limits, CSRF, input events,
request and body limits, JSON shape; and the guard's dependencies: media type, token
verification, revocation, role check, decision, events), with ``GET /item`` added as a
route that needs the READ permission. Settings come from ``BASTION_*`` as for the
service: ``memory://`` and no Redis for (2), PostgreSQL and Redis for (3).
"""

from typing import Annotated, Any

from fastapi import APIRouter, FastAPI
from item import ITEM

from bastion.accounts import Principal
from bastion.authz import Permission
from bastion.fastapi import Guard
from bastion_tasks import create_app_from_env


def create() -> FastAPI:
    app = create_app_from_env()
    guard: Guard = app.state.guard
    reader = Annotated[Principal, guard.require(Permission.READ)]
    router = APIRouter()

    @router.get("/item")
    async def item(principal: reader) -> dict[str, Any]:
        return ITEM

    app.include_router(router)
    return app
