"""(2), (3) The same handler behind Bastion's whole guard: the task service's app (its
middleware: metrics, request id and headers, hosts, rate limits, CSRF, input events,
request and body limits, JSON shape; and the guard's dependencies: media type, token
verification, revocation, role check, decision, events), with ``GET /item`` added as a
route that needs the READ permission. Settings come from ``BASTION_*`` as for the
service: SQLite and in-process stores for (2), PostgreSQL and Redis for (3).

``create`` puts ``GET /item`` first in the route list, as it is in the bare app, so the
two differ by the guard alone. ``create_last`` puts it after the service's ~50 routes,
where FastAPI's router reaches it last: the difference is route matching, which a bare
app of that many routes would pay too.
"""

from typing import Annotated, Any

from fastapi import FastAPI
from item import ITEM

from bastion.accounts import Principal
from bastion.authz import Permission
from bastion.fastapi import Guard
from bastion_tasks import create_app_from_env


def create_last() -> FastAPI:
    app = create_app_from_env()
    guard: Guard = app.state.guard
    reader = Annotated[Principal, guard.require(Permission.READ)]

    # On the app's own router, as in the bare app: an included router costs FastAPI
    # more per request (its lazy include), which the bare app does not pay.
    @app.get("/item")
    async def item(principal: reader) -> dict[str, Any]:
        return ITEM

    return app


def create() -> FastAPI:
    app = create_last()
    app.router.routes.insert(0, app.router.routes.pop())  # the /item route, now first
    return app
